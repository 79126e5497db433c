"""``drivepipe dev aws`` with fan-out: the SQS pumps run with the bridge, so a run finishes.

The sync is planned by the app (schedule in process, or ``POST /sync`` on ``chalice local``),
its work items go to a real SQS queue on moto_server, and only the bridge's pumps can deliver
them to ``fanout_worker``; the run manifest appears only if they did and the finalizer ran.
"""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path
from typing import Any

import pytest
import requests

from devstack.aws_dev import (
    LOCAL_WORK_QUEUE,
    AwsDevBridge,
    Invocation,
    fanout_queue,
    max_receive_count,
    prepare_fanout,
)
from shared.config import PipelineFile, load_config, parse_config
from shared.run.fanout.queues import QUEUE_ENV
from tests.aws.conftest import SALES_CSV, AppLoader, Stack, dev_command, wait_for
from tests.conftest import unique_bucket_name

pytestmark = pytest.mark.filterwarnings("ignore:IAMAuthorizer is not a supported")
BATCH = 2
FANOUT_CONFIG = f"""
[pipelines.bulk]
scheduled = true
source = {{ folder_id = "${{DRIVE_FOLDER_ID}}" }}
output = {{ url = "s3://${{DRIVEPIPE_OUTPUT_BUCKET}}/bulk", format = "parquet" }}
fanout = {{ min_files = 3, batch_size = {BATCH}, max_attempts = 4 }}
"""


def _pipelines(fanout: dict[str, int] | None) -> PipelineFile:
    pipeline: dict[str, Any] = {"source": {"folder_id": "f"}, "output": {"url": "s3://b/p"}}
    if fanout is not None:
        pipeline["fanout"] = fanout
    return parse_config({"pipelines": {"p": pipeline}})


def test_queues_only_when_a_pipeline_fans_out_or_a_queue_is_named() -> None:
    assert fanout_queue(_pipelines(None)) is None
    assert fanout_queue(_pipelines(None), "mine") == "mine"
    assert fanout_queue(_pipelines({})) == LOCAL_WORK_QUEUE
    url = "http://127.0.0.1:5000/123456789012/named"
    assert fanout_queue(_pipelines({}), url) == "named"
    assert max_receive_count(_pipelines({"max_attempts": 7})) == 7
    assert max_receive_count(_pipelines(None)) == 5


@pytest.fixture
def fanout_stack(stack: Stack, tmp_path: Path) -> tuple[Stack, Path, list[str]]:
    """``stack`` with 7 CSVs in the Drive folder and a pipeline that fans them out by 2."""
    for n in range(6):
        (stack.drive_root / f"part {n}.csv").write_text(SALES_CSV)
    config = tmp_path / "fanout.toml"
    config.write_text(FANOUT_CONFIG, encoding="utf-8")
    paths = sorted(p.name for p in stack.drive_root.iterdir())
    return stack, config, paths


def read_manifest(stack: Stack, run_id: str) -> dict[str, Any]:
    body = stack.s3().get_object(Bucket=stack.output_bucket, Key=f"bulk/_runs/{run_id}.json")
    manifest: dict[str, Any] = json.loads(body["Body"].read())
    return manifest


def assert_every_file_written(stack: Stack, manifest: dict[str, Any], paths: list[str]) -> None:
    records = {record["path"]: record for record in manifest["inputs"]}
    assert sorted(records) == paths
    assert {r["status"] for r in records.values()} == {"written"}, records
    assert manifest["counts"]["written"] == len(paths)
    outputs = set(stack.output_keys("bulk/"))
    assert all({f"bulk/{k}" for k in r["output_keys"]} <= outputs for r in records.values())


def queued(sqs: Any, name: str) -> int:
    """Messages still in a queue, visible or in flight."""
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return sum(int(attributes[n]) for n in names)


def test_the_bridge_pumps_the_work_queue_until_the_run_is_finalized(
    fanout_stack: tuple[Stack, Path, list[str]], load_app: AppLoader
) -> None:
    stack, config, paths = fanout_stack
    sqs = stack.moto.client("sqs")
    queue = unique_bucket_name("work")
    env = prepare_fanout(sqs, load_config(config), queue)
    assert env == {QUEUE_ENV: queue, "DRIVEPIPE_FANOUT_DLQ": f"{queue}-dlq"}
    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    policy = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])
    redrive = json.loads(policy["Attributes"]["RedrivePolicy"])
    assert int(redrive["maxReceiveCount"]) == 4  # the pipeline's fanout.max_attempts
    app = load_app(DRIVEPIPE_CONFIG=str(config), **env)
    seen: list[Invocation] = []
    bridge = AwsDevBridge(app.app, stack.s3(), stack.input_bucket, sqs=sqs, report=seen.append)
    assert bridge.pumped() == [
        f"{queue} -> fanout_worker (5 pollers, up to 5 messages each)",
        f"{queue}-dlq -> fanout_dead_letter (1 poller, up to 10 messages each)",
    ]
    threads_before = set(threading.enumerate())
    loop = threading.Thread(target=bridge.run, kwargs={"poll_interval": 0.2}, daemon=True)
    loop.start()
    try:
        bridge.schedule_now.set()
        wait_for(lambda: any(i.function == "on_schedule" for i in seen), "the schedule")
        schedule = next(i for i in seen if i.function == "on_schedule")
        started = schedule.result[0]["summary"]
        assert started["status"] == "accepted", schedule.line()
        assert started["items"] == math.ceil(len(paths) / BATCH)
        assert "fanned out run" in schedule.line()
        run_key = f"bulk/_runs/{started['run_id']}.json"
        wait_for(lambda: run_key in stack.output_keys("bulk/_runs/"), "the run manifest")
    finally:
        bridge.stopped.set()
        loop.join(timeout=90)
    assert not loop.is_alive()
    pumps = [t for t in threading.enumerate() if t.name.startswith("sqs-pump")]
    assert not set(pumps) - threads_before, "the pumps outlived the bridge"

    assert_every_file_written(stack, read_manifest(stack, started["run_id"]), paths)
    workers = [i for i in seen if i.function == "fanout_worker"]
    assert workers and all(i.error is None for i in workers), [i.line() for i in workers]
    assert workers[0].subject.startswith(f"sqs:{queue} (")
    assert queued(sqs, queue) == 0 and queued(sqs, f"{queue}-dlq") == 0


def test_drivepipe_dev_aws_finishes_a_fanned_out_http_sync(
    fanout_stack: tuple[Stack, Path, list[str]],
) -> None:
    """``drivepipe dev aws --config``: POST /sync on chalice local, pumps in the dev process."""
    stack, config, paths = fanout_stack
    queue = unique_bucket_name("work")
    options = [*stack.dev_options(), "--config", str(config), "--fanout-queue", queue]
    with dev_command("-m", "devstack.cli", "dev", "aws", *options) as dev:
        url = dev.next_line_with("http ").split()[1]
        assert f"{queue} -> fanout_worker" in dev.next_line_with("sqs pump")
        assert f"{queue}-dlq -> fanout_dead_letter" in dev.next_line_with("sqs pump")
        dev.next_line_with("ready:")
        answer = requests.post(f"{url}/sync", json={"pipeline": "bulk"}, timeout=60)
        assert answer.status_code == 202, answer.text
        progress = f"{url}{answer.json()['progress']}"
        dev.next_line_with("fanout_worker")

        def finished() -> dict[str, Any] | None:
            body: dict[str, Any] = requests.get(progress, timeout=30).json()
            return body if "counts" in body and "inputs" in body else None

        wait_for(finished, "GET /runs/<id> to answer the manifest")
    assert_every_file_written(stack, read_manifest(stack, answer.json()["run_id"]), paths)
