"""At-least-once storage events: each delivered 1-5 times, out of order and concurrently.

Real moto_server, real boto3, the same ``service.on_object`` the Lambda handler calls.
"""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from devstack.aws_events import s3_event, s3_put_record
from devstack.servers import MotoServer
from shared.config import load_config_from_env
from shared.errors import DrivepipeError, EventInProgress, is_transient
from shared.run.single import ObjectRequest, run_object
from shared.run.state import event_claim
from shared.storage import open_storage
from shared.triggers import service
from shared.triggers.events import from_s3_event
from tests.reliability.conftest import Deploy
from tests.reliability.helpers import data_keys, manifests

# How long one delivery keeps being redelivered: a time cap for a stuck claim, not a count of
# tries. Twenty tries 0.2 s apart lasted as little as 4 s when the retryable errors came fast.
REDELIVER_FOR = 120.0
STEPS = [{"op": "normalize_columns"}, {"op": "derive", "column": "total", "expr": "a * b"}]


def upload(moto: MotoServer, bucket: str, key: str, body: bytes) -> dict[str, Any]:
    """Put an object and return the S3 notification record S3 would send for it."""
    etag = moto.client().put_object(Bucket=bucket, Key=key, Body=body)["ETag"]
    return s3_put_record(bucket, key, size=len(body), etag=etag)


def deploy_upload_pipeline(deploy: Deploy, bucket: str) -> None:
    out = {"url": f"s3://{bucket}/out", "format": "csv"}
    source = {"incoming_url": f"s3://{bucket}/incoming/"}
    deploy({"pipelines": {"rel": {"source": source, "steps": STEPS, "output": out}}})


def deliver_all(records: list[dict[str, Any]], seed: int) -> dict[str, list[str]]:
    """Deliver each record 1-5 times, shuffled, 8 at a time; outcomes per dedupe id."""
    rng = random.Random(seed)
    deliveries = [rec for rec in records for _ in range(rng.randint(1, 5))]
    rng.shuffle(deliveries)
    outcomes: dict[str, list[str]] = defaultdict(list)

    def one(record: dict[str, Any]) -> tuple[str, str]:
        event = from_s3_event(s3_event([record]))[0]
        deadline = time.monotonic() + REDELIVER_FOR
        while True:  # like the cloud: a retryable error means "deliver again later"
            try:
                return event.dedupe_id, service.on_object(event, trigger="test")["outcome"]
            except DrivepipeError as exc:  # storage failures and claims held elsewhere
                if not is_transient(exc):
                    raise
                if time.monotonic() > deadline:
                    raise AssertionError(f"{event.dedupe_id} was never accepted") from None
                time.sleep(0.2)

    with ThreadPoolExecutor(8) as pool:
        for dedupe_id, outcome in pool.map(one, deliveries):
            outcomes[dedupe_id].append(outcome)
    return outcomes


def test_redelivered_events_are_processed_exactly_once(
    moto_server: MotoServer, s3_bucket: str, deploy: Deploy, tmp_path: Path
) -> None:
    deploy_upload_pipeline(deploy, s3_bucket)
    records = [
        upload(
            moto_server, s3_bucket, f"incoming/f{n:02d}.csv", f"a,b\n{n},2\n{n + 1},3\n".encode()
        )
        for n in range(12)
    ]
    # One key overwritten: two versions are two events; the later content must win.
    records.append(upload(moto_server, s3_bucket, "incoming/f00.csv", b"a,b\n100,1\n"))

    outcomes = deliver_all(records, seed=6)

    assert len(outcomes) == 13
    for dedupe_id, seen in outcomes.items():
        counts = Counter(seen)
        assert counts["transformed"] == 1, (dedupe_id, seen)
        assert counts["duplicate"] == len(seen) - 1, (dedupe_id, seen)
    out = open_storage(f"s3://{s3_bucket}/out")
    assert len(manifests(out)) == 13  # one run per event, none for a duplicate
    assert not list(out.list("_locks/events/"))  # every claim was dropped once done

    # Outputs equal a single, sequential delivery of the latest version of each object.
    reference = tmp_path / "reference"
    pipeline = load_config_from_env().pipelines["rel"]
    local = pipeline.model_copy(
        update={"output": pipeline.output.model_copy(update={"url": str(reference)})}
    )
    for n in range(12):
        run_object(
            ObjectRequest(
                pipeline=local, source_url=f"s3://{s3_bucket}/incoming", relpath=f"f{n:02d}.csv"
            )
        )
    ref = open_storage(str(reference))
    assert sorted(data_keys(out)) == sorted(data_keys(ref))
    for key in data_keys(ref):
        assert out.read(key) == ref.read(key), key
    assert b"100,1,100" in out.read("rel/f00.csv")


def test_crashed_claimant_blocks_only_until_its_claim_expires(
    moto_server: MotoServer,
    s3_bucket: str,
    deploy: Deploy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    deploy_upload_pipeline(deploy, s3_bucket)
    record = upload(moto_server, s3_bucket, "incoming/late.csv", b"a,b\n1,2\n")
    event = from_s3_event(s3_event([record]))[0]
    out = open_storage(f"s3://{s3_bucket}/out")

    # A live claim by another delivery: this one waits (bounded), then asks for redelivery.
    monkeypatch.setenv("DRIVEPIPE_EVENT_WAIT_SECONDS", "0.3")
    other = event_claim(out, event.dedupe_id)
    other.acquire()
    with pytest.raises(EventInProgress, match="being processed by another delivery"):
        service.on_object(event, trigger="test")
    assert not out.exists("rel/late.csv")

    # The claimant died (never released) and its claim ran out: as if its last renewal was
    # long ago. A redelivery now takes the event over.
    other._clock = lambda: time.time() - 3600
    other.renew()
    assert service.on_object(event, trigger="test")["outcome"] == "transformed"
    assert out.exists("rel/late.csv")
    assert service.on_object(event, trigger="test")["outcome"] == "duplicate"
