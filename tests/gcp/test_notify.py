"""Notifications on the GCP path: real functions-framework processes, the local Pub/Sub
stand-in (:mod:`devstack.pubsub_local`, reached through ``PUBSUB_EMULATOR_HOST`` as the
functions reach Pub/Sub) and a loopback webhook. The functions log at DEBUG with third-party
loggers on, as JSON lines (``K_SERVICE`` is set, as on Cloud Run).
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from devstack.gcp_dev import GcpDevStack
from devstack.pubsub_local import PubSubStandIn
from devstack.servers import GcsEmulator
from devstack.webhook_receiver import WebhookReceiver
from tests.gcp.conftest import function_logs, unique, wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]
BAD_CSV = (REPO_ROOT / "devstack" / "samples" / "drive" / "broken" / "bad.csv").read_bytes()
TOPIC = "projects/local-project/topics/drivepipe-alerts"
CONFIG = """
[settings]
requests_url = "gs://${DRIVEPIPE_INPUT_BUCKET}/requests/"

[settings.notify]
pubsub_topic = "${TEST_NOTIFY_TOPIC}"
webhook_url_env = "TEST_WEBHOOK_URL"

[pipelines.sales]
source = { folder_id = "${DRIVE_FOLDER_ID}", include = ["sales/**", "broken/**"] }
output = { url = "gs://${DRIVEPIPE_OUTPUT_BUCKET}/sales" }

[pipelines.clean]
source = { folder_id = "${DRIVE_FOLDER_ID}", include = ["sales/**"] }
output = { url = "gs://${DRIVEPIPE_OUTPUT_BUCKET}/clean" }

[pipelines.clean.notify]
on = ["failed"]
pubsub_topic = "${TEST_NOTIFY_TOPIC}"
webhook_url_env = "TEST_WEBHOOK_URL"
"""


@dataclass
class Wired:
    stack: GcpDevStack
    pubsub: PubSubStandIn
    hook: WebhookReceiver

    def published(self) -> list[dict[str, Any]]:
        """The notifications published so far: attributes and the decoded event."""
        return [
            {"attributes": m["attributes"], "event": json.loads(base64.b64decode(m["data"]))}
            for m in self.pubsub.published.get(TOPIC, [])
        ]

    def sync(self, pipeline: str) -> dict[str, Any]:
        answer = requests.post(
            f"{self.stack.url('sync_http')}/sync", json={"pipeline": pipeline}, timeout=120
        )
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body


@pytest.fixture(scope="module")
def wired(gcs_emulator: GcsEmulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Wired]:
    root = tmp_path_factory.mktemp("notify-drive")
    (root / "sales").mkdir()
    (root / "sales" / "q1.csv").write_text("Order ID,Units\nA1,3\nA2,5\n")
    (root / "broken").mkdir()
    (root / "broken" / "bad.csv").write_bytes(BAD_CSV)
    config = root.parent / f"notify-{uuid.uuid4().hex[:6]}.toml"
    config.write_text(CONFIG)
    with PubSubStandIn() as pubsub, WebhookReceiver([500, 500]) as hook:
        stack = GcpDevStack(
            config=config,
            drive_root=root,
            gcs_url=gcs_emulator.url,
            input_bucket=unique("notify-in"),
            output_bucket=unique("notify-out"),
            watch=False,
            retries=0,
            extra_env={
                "PUBSUB_EMULATOR_HOST": pubsub.host,
                "TEST_NOTIFY_TOPIC": TOPIC,
                "TEST_WEBHOOK_URL": hook.url,
                "DRIVEPIPE_NOTIFY_BACKOFF_SECONDS": "0",
                "DRIVEPIPE_LOG_LEVEL": "DEBUG",
                "DRIVEPIPE_LOG_THIRD_PARTY": "debug",
            },
            printer=lambda line: None,
        )
        with stack:
            yield Wired(stack, pubsub, hook)


def test_a_malformed_file_notifies_pubsub_and_the_webhook_and_the_run_succeeds(
    wired: Wired,
) -> None:
    summary = wired.sync("sales")
    run_id = summary["run_id"]
    assert summary["counts"]["failed"] == 1 and summary["counts"]["written"] == 1

    [message] = [m for m in wired.published() if m["event"]["run_id"] == run_id]
    assert message["attributes"] == {
        "pipeline": "sales",
        "run_id": run_id,
        "status": "failed",
        "type": "drivepipe.run",
    }
    [failed] = message["event"]["failed"]
    assert failed["path"] == "broken/bad.csv" and failed["reason"]
    assert failed["quarantine_url"].startswith("gs://")
    assert message["event"]["manifest"].endswith(f"/_runs/{run_id}.json")

    assert [r.status for r in wired.hook.received[:3]] == [500, 500, 200]
    assert any(run_id in body["text"] for body in wired.hook.accepted)

    base = wired.stack.url("sync_http")
    listed = requests.get(f"{base}/runs", params={"status": "failed"}, timeout=60).json()
    assert run_id in [r["run_id"] for r in listed["runs"]]
    manifest = requests.get(f"{base}/runs/{run_id}", timeout=60).json()
    assert {n["target"]: n["ok"] for n in manifest["notifications"]} == {
        "pubsub": True,
        "webhook": True,
    }
    bad = requests.get(f"{base}/runs", params={"limit": "1000"}, timeout=60)
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "limit"

    server = wired.stack.functions["sync_http"]
    text = server.log_text()
    assert "urllib3.connectionpool" in text  # third-party DEBUG lines were written
    assert wired.hook.token not in text
    [metrics] = [
        r
        for r in function_logs(server)
        if r.get("event") == "drivepipe.run_metrics" and r.get("run_id") == run_id
    ]
    assert metrics["severity"] == "WARNING" and metrics["metrics"]["InputsFailed"] == 1
    assert metrics["metrics"]["DriveRequests"] >= 2


def test_a_clean_run_with_on_failed_notifies_nothing(wired: Wired) -> None:
    before = (len(wired.published()), len(wired.hook.received))
    summary = wired.sync("clean")
    assert summary["counts"]["written"] == 1 and summary["counts"]["failed"] == 0
    assert (len(wired.published()), len(wired.hook.received)) == before


def test_a_request_file_sync_returns_and_logs_its_run_id(wired: Wired) -> None:
    bucket = wired.stack.client.bucket(wired.stack.input_bucket)
    blob = bucket.blob("requests/now.json")
    blob.upload_from_string(b'{"pipeline": "clean"}', content_type="application/json")
    delivery = wired.stack.deliver_object(bucket.get_blob("requests/now.json"))
    assert delivery.ok
    server = wired.stack.functions["on_upload"]

    def logged() -> list[dict[str, Any]]:
        return [r for r in function_logs(server) if r.get("outcome") == "sync" and r.get("run_id")]

    [line] = wait_for(logged)
    assert line["run_id"] == line["summary"]["run_id"]
    assert "trigger" in line["summary"] and line["summary"]["trigger"] == "gcs:request"
