"""The local AWS simulation end to end: uploads to moto_server become real S3 events."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from types import ModuleType

import pytest
import requests

from devstack.aws_dev import AwsDevBridge, Invocation, S3UploadWatcher
from tests.aws.conftest import REPO_ROOT, SALES_CSV, Stack

pytestmark = pytest.mark.filterwarnings("ignore:IAMAuthorizer is not a supported")
DEADLINE = 60.0


def wait_for(check: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


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
    wait_for(lambda: stack.data_outputs() == ["sales/week (1).parquet"], "the output object")
    wait_for(lambda: len(seen) == 1, "the invocation report")
    assert seen[0].function == "on_upload" and seen[0].error is None
    assert seen[0].result[0]["outcome"] == "transformed"
    assert "transformed" in seen[0].line()

    dev.schedule_now.set()
    wait_for(lambda: len(seen) == 2, "the scheduled invocation")
    assert seen[1].function == "on_schedule" and seen[1].error is None
    assert seen[1].result[0]["pipeline"] == "sales"


def _read_lines(stream: object, into: queue.Queue[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        into.put(line.rstrip("\n"))


def test_the_dev_command_serves_http_and_delivers_uploads(stack: Stack) -> None:
    """``python -m devstack.aws_dev`` against our moto_server and Drive emulator."""
    command = [
        sys.executable,
        "-m",
        "devstack.aws_dev",
        "--s3-endpoint",
        stack.moto.url,
        "--drive-url",
        stack.drive.url,
        "--drive-folder-id",
        stack.drive.root_id,
        "--input-bucket",
        stack.input_bucket,
        "--output-bucket",
        stack.output_bucket,
        "--poll-interval",
        "0.2",
    ]
    process = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_read_lines, args=(process.stdout, lines), daemon=True).start()
    output: list[str] = []

    def next_line_with(text: str) -> str:
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                assert process.poll() is None, "\n".join(output)
                continue
            output.append(line)
            if text in line:
                return line
        pytest.fail(f"no line with {text!r} in:\n" + "\n".join(output))

    try:
        url = next_line_with("http ").split()[1]
        next_line_with("ready:")
        health = requests.get(f"{url}/health", timeout=30)
        assert health.status_code == 200 and health.json()["pipelines"] == ["sales"]
        bad = requests.post(
            f"{url}/sync", data=b"{", timeout=30, headers={"Content-Type": "application/json"}
        )
        assert bad.status_code == 400

        stack.s3().put_object(
            Bucket=stack.input_bucket, Key="incoming/sales/q 9.csv", Body=SALES_CSV.encode()
        )
        assert "transformed" in next_line_with("on_upload")
        assert "sales/q 9.parquet" in stack.data_outputs()

        process.send_signal(signal.SIGUSR1)
        assert "sales:" in next_line_with("on_schedule")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode == 0, "\n".join(output)
