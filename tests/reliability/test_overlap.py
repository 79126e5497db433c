"""Two syncs of one pipeline at once: the second is refused (409 over HTTP), nothing corrupts."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from devstack.drive_emulator import DriveEmulator
from shared.errors import LeaseHeld, LeaseLost
from shared.run.engine import sync_lease
from shared.run.lease import LeaseInfo
from shared.run.manifest import InputRecord
from shared.run.sync import SyncRequest, run_sync
from shared.storage import open_storage
from shared.triggers import service
from tests.reliability.conftest import Deploy, make_pipeline
from tests.reliability.helpers import missing_outputs, state_entries

GATE_TIMEOUT = 60.0  # a cap for a hung sync, not a margin: nothing waits it out


def fill(root: Path, count: int) -> None:
    for n in range(count):
        (root / f"f{n:03d}.csv").write_text(f"a,b\n{n},1\n")


def test_overlapping_sync_is_refused_and_state_stays_whole(
    emulator: DriveEmulator, drive_root: Path, tmp_path: Path, deploy: Deploy
) -> None:
    fill(drive_root, 24)
    dest_url = str(tmp_path / "dest")
    deploy(
        {
            "pipelines": {
                "rel": {"source": {"folder_id": emulator.root_id}, "output": {"url": dest_url}}
            }
        }
    )
    pipeline = make_pipeline(dest_url, emulator.root_id, concurrency=2)
    dest = open_storage(dest_url)
    first: dict[str, object] = {}
    # The first sync stops after its first file, holding the lease, until the overlapping
    # attempts are done: it is mid-run for them however fast or slow the machine is.
    mid_run, overlap_done = threading.Event(), threading.Event()

    def hold_after_first_file(record: InputRecord, done: int, total: int) -> None:
        if done == 1:
            mid_run.set()
            assert overlap_done.wait(GATE_TIMEOUT), "the overlapping attempts never finished"

    def long_sync() -> None:
        request = SyncRequest(pipeline=pipeline, checkpoint_every=1)
        first["manifest"] = run_sync(request, progress=hold_after_first_file)

    runner = threading.Thread(target=long_sync)
    runner.start()
    try:
        assert mid_run.wait(GATE_TIMEOUT), "the first sync never processed a file"
        with pytest.raises(LeaseHeld) as refused:
            run_sync(SyncRequest(pipeline=pipeline))
        response = service.http_sync(b'{"pipeline": "rel"}')
    finally:
        overlap_done.set()
        runner.join()

    first_run = first["manifest"].run_id  # type: ignore[attr-defined]
    assert refused.value.holder.run_id == first_run
    assert response.status == 409
    assert response.body["error"]["code"] == "sync_running"
    assert response.body["error"]["run_id"] == first_run
    assert response.body["error"]["expires_at"].endswith("Z")
    assert first["manifest"].counts()["written"] == 24  # type: ignore[attr-defined]
    assert missing_outputs(dest, "rel") == [] and len(state_entries(dest, "rel")) == 24

    again = run_sync(SyncRequest(pipeline=pipeline))  # the lease was released: free at once
    assert again.counts()["skipped_unchanged"] == 24


def test_a_sync_whose_lease_was_taken_over_stops_without_saving_state(
    emulator: DriveEmulator, drive_root: Path, tmp_path: Path
) -> None:
    fill(drive_root, 8)
    dest = open_storage(str(tmp_path / "dest"))
    pipeline = make_pipeline(dest.base_url, emulator.root_id, concurrency=1)

    def take_over(record: InputRecord, done: int, total: int) -> None:
        if done == 3:  # as if our lease expired while we stalled and another sync took it
            current = sync_lease(dest, "rel").latest()
            assert current is not None
            now = time.time()
            usurper = LeaseInfo(current.epoch + 1, "usurper", "run-usurper", now, now + 60)
            assert dest.create_if_absent(
                f"_locks/sync/rel/{current.epoch + 1:012d}.json", usurper.to_json()
            )

    with pytest.raises(LeaseLost, match="taken over"):
        run_sync(SyncRequest(pipeline=pipeline, checkpoint_every=1), progress=take_over)
    saved = state_entries(dest, "rel")
    assert len(saved) == 2  # checkpoints before the takeover; nothing after it
    assert missing_outputs(dest, "rel") == []
    latest = sync_lease(dest, "rel").latest()
    assert latest is not None and latest.holder == "usurper" and not latest.released
