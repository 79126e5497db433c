"""The local AWS simulation end to end: uploads to moto_server become real S3 events."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import requests

from devstack.aws_dev import AwsDevBridge, Invocation, S3UploadWatcher
from tests.aws.conftest import SALES_CSV, Stack, dev_command, wait_for

pytestmark = pytest.mark.filterwarnings("ignore:IAMAuthorizer is not a supported")
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def bridge(app_module: ModuleType, stack: Stack) -> Iterator[tuple[AwsDevBridge, list[Invocation]]]:
    seen: list[Invocation] = []
    bridge = AwsDevBridge(app_module.app, stack.s3(), stack.input_bucket, report=seen.append)
    thread = threading.Thread(target=bridge.run, kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()
    wait_for(bridge.ready.is_set, "the watcher to remember existing objects")
    yield bridge, seen
    bridge.stopped.set()
    thread.join(timeout=30)
    assert not thread.is_alive()


def test_watcher_reports_new_and_overwritten_objects_once(stack: Stack) -> None:
    s3 = stack.s3()
    s3.put_object(Bucket=stack.input_bucket, Key="before.csv", Body=b"a")
    watcher = S3UploadWatcher(s3, stack.input_bucket)
    assert watcher.prime() == 1
    s3.put_object(Bucket=stack.input_bucket, Key="new file.csv", Body=b"b")
    assert [o["Key"] for o in watcher.poll()] == ["new file.csv"]
    assert watcher.poll() == []
    s3.put_object(Bucket=stack.input_bucket, Key="before.csv", Body=b"changed")
    assert [o["Key"] for o in watcher.poll()] == ["before.csv"]


def test_an_upload_is_transformed_in_process(
    bridge: tuple[AwsDevBridge, list[Invocation]], stack: Stack
) -> None:
    dev, seen = bridge
    stack.s3().put_object(
        Bucket=stack.input_bucket, Key="incoming/sales/week (1).csv", Body=SALES_CSV.encode()
    )
    wait_for(lambda: stack.data_outputs() == ["sales/sales/week (1).parquet"], "the output object")
    wait_for(lambda: len(seen) == 1, "the invocation report")
    assert seen[0].function == "on_upload" and seen[0].error is None
    assert seen[0].result[0]["outcome"] == "transformed"
    assert "transformed" in seen[0].line()

    dev.schedule_now.set()
    wait_for(lambda: len(seen) == 2, "the scheduled invocation")
    assert seen[1].function == "on_schedule" and seen[1].error is None
    assert seen[1].result[0]["pipeline"] == "sales"


def test_the_dev_command_serves_http_and_delivers_uploads(stack: Stack) -> None:
    """``python -m devstack.aws_dev`` against our moto_server and Drive emulator."""
    with dev_command("-m", "devstack.aws_dev", *stack.dev_options()) as dev:
        url = dev.next_line_with("http ").split()[1]
        dev.next_line_with("ready:")
        pumped = [line for line in dev.output if line.startswith("sqs pump")]
        # no fan-out configured: no work queues (only Drive push's queue, on by default)
        assert [line.split()[2] for line in pumped] == ["drivepipe-push-local"]
        health = requests.get(f"{url}/health", timeout=30)
        assert health.status_code == 200 and health.json()["pipelines"] == ["sales"]
        bad = requests.post(
            f"{url}/sync", data=b"{", timeout=30, headers={"Content-Type": "application/json"}
        )
        assert bad.status_code == 400

        stack.s3().put_object(
            Bucket=stack.input_bucket, Key="incoming/sales/q 9.csv", Body=SALES_CSV.encode()
        )
        assert "transformed" in dev.next_line_with("on_upload")
        assert "sales/sales/q 9.parquet" in stack.data_outputs()

        # the malformed sample is quarantined, and its notification printed from the SNS topic
        assert any(line.startswith("sns topic") for line in dev.output)
        bad = (REPO_ROOT / "devstack" / "samples" / "drive" / "broken" / "bad.csv").read_bytes()
        stack.s3().put_object(Bucket=stack.input_bucket, Key="incoming/sales/bad.csv", Body=bad)
        assert "transformed" in dev.next_line_with("on_upload")
        dev.next_line_with("notification via SNS")
        assert "drivepipe sales: 1 input failed" in dev.next_line_with("| drivepipe")
        assert "bad.csv" in dev.next_line_with("failed:")

        dev.process.send_signal(signal.SIGUSR1)
        assert "sales:" in dev.next_line_with("on_schedule")
