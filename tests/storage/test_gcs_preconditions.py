"""devstack/gcs_emulator.py: the local GCS emulator enforces object preconditions as GCS does.

Real google-cloud-storage client against the session's emulator subprocess; without the patch
upstream gcp-storage-emulator ignores ``ifGenerationMatch`` and every test here fails.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from google.api_core.exceptions import PreconditionFailed

from devstack.gcs_emulator import PRECONDITION_FAILED_MESSAGE
from devstack.servers import GcsEmulator
from shared.storage import open_storage
from tests.storage.helpers import GCS_CHUNK


def test_second_create_if_absent_loses_and_keeps_the_first(gcs_bucket: str) -> None:
    store = open_storage(f"gs://{gcs_bucket}/root")
    assert store.create_if_absent("claims/event-1", b"first") is True
    assert store.create_if_absent("claims/event-1", b"second") is False
    assert store.read("claims/event-1") == b"first"


def test_racing_create_if_absent_has_exactly_one_winner(gcs_bucket: str) -> None:
    contenders = 8
    barrier = threading.Barrier(contenders)

    def contend(index: int) -> bool:
        store = open_storage(f"gs://{gcs_bucket}/root")  # one client per contender, as in prod
        barrier.wait()
        return store.create_if_absent("_locks/sync/p/000000000002.json", f"t{index}".encode())

    with ThreadPoolExecutor(contenders) as pool:
        won = list(pool.map(contend, range(contenders)))
    assert won.count(True) == 1
    winner = won.index(True)
    assert open_storage(f"gs://{gcs_bucket}/root").read("_locks/sync/p/000000000002.json") == (
        f"t{winner}".encode()
    )


def test_a_refused_write_answers_gcs_412_condition_not_met(
    gcs_emulator: GcsEmulator, gcs_bucket: str
) -> None:
    bucket = gcs_emulator.client().bucket(gcs_bucket)
    bucket.blob("o").upload_from_string(b"first", if_generation_match=0)
    with pytest.raises(PreconditionFailed) as refused:
        bucket.blob("o").upload_from_string(b"second", if_generation_match=0)
    assert refused.value.code == 412
    assert PRECONDITION_FAILED_MESSAGE in refused.value.message
    assert '"reason": "conditionNotMet"' in refused.value.message


def test_if_generation_match_n_needs_the_live_generation(
    gcs_emulator: GcsEmulator, gcs_bucket: str
) -> None:
    bucket = gcs_emulator.client().bucket(gcs_bucket)
    bucket.blob("o").upload_from_string(b"v1")
    first = bucket.get_blob("o").generation
    bucket.blob("o").upload_from_string(b"v2", if_generation_match=first)
    with pytest.raises(PreconditionFailed):  # v1's generation is stale now
        bucket.blob("o").upload_from_string(b"v3", if_generation_match=first)
    with pytest.raises(PreconditionFailed):
        bucket.blob("o").delete(if_generation_match=first)
    assert bucket.blob("o").download_as_bytes() == b"v2"
    with pytest.raises(PreconditionFailed):  # a generation on a missing object never matches
        bucket.blob("missing").upload_from_string(b"x", if_generation_match=first)
    assert bucket.get_blob("missing") is None


def test_resumable_upload_onto_an_existing_object_is_refused(
    gcs_emulator: GcsEmulator, gcs_bucket: str
) -> None:
    bucket = gcs_emulator.client().bucket(gcs_bucket)
    bucket.blob("big").upload_from_string(b"kept")
    payload = b"x" * (2 * GCS_CHUNK + 1)  # several chunks: resumable, not multipart
    with pytest.raises(PreconditionFailed):
        bucket.blob("big", chunk_size=GCS_CHUNK).upload_from_string(payload, if_generation_match=0)
    assert bucket.blob("big").download_as_bytes() == b"kept"
