"""Fan-out on the simulated AWS path: Chalice handlers, moto_server SQS + S3, Drive emulator.

``POST /sync`` answers 202 with a run id; the SQS pump (Lambda's event source mapping, played
locally) feeds ``fanout_worker`` real SQS events from 4 concurrent pollers; the DLQ pump feeds
``fanout_dead_letter``. Progress and the final manifest are read through ``GET /runs/{id}``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from chalice.test import Client

from devstack.drive_emulator.emulator import DriveEmulator
from devstack.servers import MotoServer
from devstack.sqs_pump import SqsPump, chalice_invoker, create_work_queues
from shared.config import load_config_from_env
from tests.aws.conftest import import_app
from tests.conftest import unique_bucket_name
from tests.fanout.conftest import (
    BATCH,
    MALFORMED,
    MAX_RECEIVE,
    POISON,
    TOTAL_FILES,
    by_path,
    is_final,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.filterwarnings("ignore:IAMAuthorizer is not a supported")
JSON = {"Content-Type": "application/json"}


@dataclass
class AwsFanout:
    """The app, its test client, and the queues/buckets of one test."""

    app: ModuleType
    client: Client
    moto: MotoServer
    queue_url: str
    dlq_url: str
    output_bucket: str

    def worker_pump(self, record: list[Any] | None = None) -> SqsPump:
        invoke = chalice_invoker(self.app.app, "fanout_worker")
        lock = threading.Lock()

        def recording(event: dict[str, Any]) -> Any:
            payload = invoke(event)
            if record is not None:
                with lock:
                    record.append((event, payload))
            return payload

        return SqsPump(self.moto.client("sqs"), self.queue_url, recording, batch_size=5)

    def dlq_pump(self) -> SqsPump:
        invoke = chalice_invoker(self.app.app, "fanout_dead_letter")
        return SqsPump(self.moto.client("sqs"), self.dlq_url, invoke, batch_size=10)

    def get_run(self, run_id: str) -> dict[str, Any]:
        response = self.client.http.get(f"/runs/{run_id}")
        assert response.status_code == 200, response.body
        body: dict[str, Any] = response.json_body
        return body

    def keys(self, prefix: str) -> list[str]:
        pages = (
            self.moto.client("s3")
            .get_paginator("list_objects_v2")
            .paginate(Bucket=self.output_bucket, Prefix=prefix)
        )
        return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


@pytest.fixture
def aws(
    moto_server: MotoServer,
    s3_env: dict[str, str],
    fanout_drive_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[AwsFanout]:
    """The Chalice app wired to a fresh work queue + DLQ (maxReceiveCount 3) and buckets."""
    output_bucket = moto_server.create_bucket(unique_bucket_name("fo-out"))
    input_bucket = moto_server.create_bucket(unique_bucket_name("fo-in"))
    name = unique_bucket_name("work")
    queue_url, dlq_url = create_work_queues(
        moto_server.client("sqs"), name, max_receive_count=MAX_RECEIVE, visibility_timeout=900
    )
    config = write_config(tmp_path / "drivepipe.toml", "s3", max_attempts=5)
    with DriveEmulator(fanout_drive_root) as drive:
        env = {
            "DRIVE_API_URL": drive.url,
            "DRIVE_ACCESS_TOKEN": "local-test-token",
            "DRIVE_FOLDER_ID": drive.root_id,
            "DRIVEPIPE_INPUT_BUCKET": input_bucket,
            "DRIVEPIPE_OUTPUT_BUCKET": output_bucket,
            "DRIVEPIPE_CONFIG": str(config),
            "DRIVEPIPE_HTTP_AUTH": "iam",
            "DRIVEPIPE_FANOUT_QUEUE": name,
            "DRIVEPIPE_FANOUT_DLQ": f"{name}-dlq",
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        app = import_app()
        yield AwsFanout(
            app,
            Client(app.app, project_dir=str(tmp_path)),
            moto_server,
            queue_url,
            dlq_url,
            output_bucket,
        )
    load_config_from_env.cache_clear()


def post_sync(aws: AwsFanout, pipeline: str) -> tuple[int, dict[str, Any]]:
    response = aws.client.http.post("/sync", headers=JSON, body=json.dumps({"pipeline": pipeline}))
    return response.status_code, json.loads(response.body or b"{}")


def test_big_sync_fans_out_and_completes_with_poisoned_items_reported(aws: AwsFanout) -> None:
    status, started = post_sync(aws, "bulk")
    assert status == 202, started
    run_id = started["run_id"]
    items = -(-TOTAL_FILES // BATCH)
    assert started["progress"] == f"/runs/{run_id}"
    assert started["items"] == items and started["files_to_process"] == TOTAL_FILES

    before = aws.get_run(run_id)
    assert before["status"] == "running"
    assert before["items"] == {"total": items, "done": 0, "failed": 0, "pending": items}

    calls: list[Any] = []
    workers = aws.worker_pump(calls)
    workers.poll_once()  # one invocation of up to 5 items: the run is part-way
    partway = aws.get_run(run_id)
    assert partway["status"] == "running"
    assert 0 < partway["items"]["done"] <= 5
    assert partway["items"]["pending"] == items - partway["items"]["done"]

    dead = aws.dlq_pump().start(workers=1)
    workers.start(workers=4)
    try:
        manifest = wait_for(lambda: is_final(body := aws.get_run(run_id)) and body, what="manifest")
    finally:
        workers.stop()
        dead.stop()

    records = by_path(manifest)
    assert len(records) == TOTAL_FILES
    crashed = [r for r in records.values() if "dead-lettered" in (r["error"] or "")]
    poison = records[POISON]
    assert poison["status"] == "failed"
    assert "dead-lettered" in poison["error"] and "SimulatedCrash" in poison["error"]
    assert f"delivery {MAX_RECEIVE}" in poison["error"], poison["error"]
    assert 1 <= len(crashed) <= BATCH  # the poison's item fails as a whole
    for path in MALFORMED:
        assert records[path]["status"] == "failed", records[path]
        if records[path] not in crashed:  # unless it shared the poison's item
            quarantine_key = "bulk/" + str(records[path]["quarantine_key"])
            assert quarantine_key in set(aws.keys("bulk/_quarantine/"))
    written = [r for r in records.values() if r["status"] == "written"]
    assert len(written) == TOTAL_FILES - len(set(MALFORMED) | {r["path"] for r in crashed})
    assert manifest["counts"]["written"] == len(written)
    outputs = set(aws.keys("bulk/"))
    assert all({"bulk/" + k for k in r["output_keys"]} <= outputs for r in written)

    state = _state(aws)
    assert {v["path"] for v in state["inputs"].values()} == {
        r["path"] for r in records.values() if r not in crashed
    }
    assert all(not calls_failed for calls_failed in _failures(calls, exclude_poison=True))

    # At-least-once: deliver every good item again. Nothing is redone or rewritten.
    s3, sqs = aws.moto.client("s3"), aws.moto.client("sqs")
    watched = [f"bulk/_runs/{run_id}.json", "bulk/" + written[0]["output_keys"][0]]
    before_again = {
        k: s3.head_object(Bucket=aws.output_bucket, Key=k)["LastModified"] for k in watched
    }
    bodies = {r["body"] for event, _ in calls for r in event["Records"] if POISON not in r["body"]}
    for body in bodies:
        sqs.send_message(QueueUrl=aws.queue_url, MessageBody=body)
    again: list[Any] = []
    assert aws.worker_pump(again).drain() == len(bodies)
    assert all(not payload["batchItemFailures"] for _, payload in again)
    after_again = {
        k: s3.head_object(Bucket=aws.output_bucket, Key=k)["LastModified"] for k in watched
    }
    assert after_again == before_again
    assert len(aws.keys(f"bulk/_runs/{run_id}/items/")) == items
    assert aws.get_run(run_id) == manifest


def _state(aws: AwsFanout) -> dict[str, Any]:
    body = aws.moto.client("s3").get_object(Bucket=aws.output_bucket, Key="bulk/_state/bulk.json")
    state: dict[str, Any] = json.loads(body["Body"].read())
    return state


def _failures(calls: list[Any], *, exclude_poison: bool) -> list[list[str]]:
    """Per invocation, the failed message ids that did not carry the poison file."""
    out = []
    for event, payload in calls:
        bodies = {r["messageId"]: r["body"] for r in event["Records"]}
        failed = [f["itemIdentifier"] for f in payload["batchItemFailures"]]
        if exclude_poison:
            failed = [m for m in failed if POISON not in bodies[m]]
        out.append(failed)
    return out


def test_small_sync_runs_inline_with_200(aws: AwsFanout) -> None:
    status, body = post_sync(aws, "small")
    assert status == 200, body
    assert body["counts"]["written"] == 4
    manifests = [k for k in aws.keys("small/_runs/") if not k.startswith("small/_runs/index/")]
    assert manifests == [f"small/_runs/{body['run_id']}.json"]
    sqs = aws.moto.client("sqs")
    attrs = sqs.get_queue_attributes(
        QueueUrl=aws.queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )
    assert attrs["Attributes"]["ApproximateNumberOfMessages"] == "0"


def test_progress_of_an_unknown_run_is_404(aws: AwsFanout) -> None:
    response = aws.client.http.get("/runs/20260101T000000Z-00000000")
    assert response.status_code == 404
