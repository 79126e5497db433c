"""Fan-out on the simulated GCP path: functions-framework processes, the local Pub/Sub push
stand-in (``devstack.pubsub_local``), gcp-storage-emulator and the Drive emulator.

``sync_http`` publishes work items over the Pub/Sub REST API (``PUBSUB_EMULATOR_HOST``); the
stand-in pushes them as ``messagePublished`` CloudEvents to ``fanout_worker`` (4 concurrent
deliveries), retries failures like ``--retry`` and dead-letters after 3 attempts to the topic
``fanout_dead_letter`` listens on.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from devstack.drive_emulator.emulator import DriveEmulator
from devstack.gcp_dev import FunctionServer, start_all, storage_client
from devstack.pubsub_local import PubSubStandIn, Subscription
from devstack.servers import GcsEmulator
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

REPO_ROOT = Path(__file__).resolve().parents[2]
PROJECT = "local"
WORK_TOPIC = f"projects/{PROJECT}/topics/drivepipe-work"
DEAD_TOPIC = f"projects/{PROJECT}/topics/drivepipe-work-dead"
TARGETS = ("sync_http", "fanout_worker", "fanout_dead_letter")


@dataclass
class GcpFanout:
    """The functions, the stand-in and the output bucket of the module."""

    functions: dict[str, FunctionServer]
    pubsub: PubSubStandIn
    gcs: Any
    output_bucket: str

    def http(self, method: str, path: str, body: str | None = None) -> requests.Response:
        url = self.functions["sync_http"].url + path
        return requests.request(method, url, data=body, timeout=60)

    def get_run(self, run_id: str) -> dict[str, Any]:
        response = self.http("GET", f"/runs/{run_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def names(self, prefix: str) -> set[str]:
        return {b.name for b in self.gcs.list_blobs(self.output_bucket, prefix=prefix)}

    def updated(self, name: str) -> Any:
        return self.gcs.bucket(self.output_bucket).get_blob(name).updated


@pytest.fixture(scope="module")
def gcp(
    gcs_emulator: GcsEmulator, fanout_drive_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GcpFanout]:
    """Three functions-framework processes wired to the stand-in; stopped after the module."""
    gcs = storage_client(gcs_emulator.url)
    output_bucket = gcs.create_bucket(unique_bucket_name("fo-gout")).name
    input_bucket = gcs.create_bucket(unique_bucket_name("fo-gin")).name
    config = write_config(tmp_path_factory.mktemp("gcp-fanout") / "drivepipe.toml", "gs")
    with DriveEmulator(fanout_drive_root) as drive, PubSubStandIn(max_instances=4) as pubsub:
        env = {
            "DRIVEPIPE_CONFIG": str(config),
            "STORAGE_EMULATOR_HOST": gcs_emulator.url,
            "GOOGLE_CLOUD_PROJECT": PROJECT,
            "DRIVE_API_URL": drive.url,
            "DRIVE_ACCESS_TOKEN": "local-test-token",
            "DRIVE_FOLDER_ID": drive.root_id,
            "DRIVEPIPE_INPUT_BUCKET": input_bucket,
            "DRIVEPIPE_OUTPUT_BUCKET": output_bucket,
            "DRIVEPIPE_FANOUT_TOPIC": WORK_TOPIC,
            "PUBSUB_EMULATOR_HOST": pubsub.host,
            "PYTHONPATH": str(REPO_ROOT),  # the poison custom step lives in tests/fanout
        }
        functions = {t: FunctionServer(t, env) for t in TARGETS}
        start_all(functions.values())
        try:
            pubsub.subscribe(
                Subscription(
                    WORK_TOPIC,
                    functions["fanout_worker"].url,
                    max_delivery_attempts=MAX_RECEIVE,
                    dead_letter_topic=DEAD_TOPIC,
                )
            )
            pubsub.subscribe(Subscription(DEAD_TOPIC, functions["fanout_dead_letter"].url))
            yield GcpFanout(functions, pubsub, gcs, output_bucket)
        finally:
            for server in functions.values():
                server.stop()


def test_big_sync_fans_out_over_pubsub_and_completes(gcp: GcpFanout) -> None:
    gcp.pubsub.hold()
    response = gcp.http("POST", "/sync", '{"pipeline": "bulk"}')
    assert response.status_code == 202, response.text
    started = response.json()
    run_id, items = started["run_id"], -(-TOTAL_FILES // BATCH)
    assert started["items"] == items and started["progress"] == f"/runs/{run_id}"
    assert len(gcp.pubsub.published[WORK_TOPIC]) == items

    waiting = gcp.get_run(run_id)
    assert waiting["status"] == "running"
    assert waiting["items"] == {"total": items, "done": 0, "failed": 0, "pending": items}

    gcp.pubsub.release()
    manifest = wait_for(lambda: is_final(body := gcp.get_run(run_id)) and body, what="manifest")
    assert gcp.pubsub.wait_idle(60)

    records = by_path(manifest)
    assert len(records) == TOTAL_FILES
    poison = records[POISON]
    assert poison["status"] == "failed"
    assert f"dead-lettered after {MAX_RECEIVE} deliveries" in poison["error"]
    assert "SimulatedCrash" in poison["error"]
    assert gcp.pubsub.stats.dead_lettered == 1
    crashed = [r for r in records.values() if "dead-lettered" in (r["error"] or "")]
    quarantined = gcp.names("bulk/_quarantine/")
    for path in MALFORMED:
        assert records[path]["status"] == "failed", records[path]
        if records[path] not in crashed:  # unless it shared the poison's item
            assert "bulk/" + str(records[path]["quarantine_key"]) in quarantined, records[path]
    written = [r for r in records.values() if r["status"] == "written"]
    assert len(written) == TOTAL_FILES - len(set(MALFORMED) | {r["path"] for r in crashed})
    outputs = gcp.names("bulk/")
    assert all({"bulk/" + k for k in r["output_keys"]} <= outputs for r in written)

    # Duplicate deliveries of finished items change nothing.
    watched = [f"bulk/_runs/{run_id}.json", "bulk/" + written[0]["output_keys"][0]]
    before = {name: gcp.updated(name) for name in watched}
    repeats = [m for m in gcp.pubsub.published[WORK_TOPIC][:5]]
    delivered = gcp.pubsub.stats.delivered
    gcp.pubsub.publish(
        WORK_TOPIC, [{"data": m["data"], "attributes": m["attributes"]} for m in repeats]
    )
    assert gcp.pubsub.wait_idle(60)
    assert gcp.pubsub.stats.delivered - delivered == len(repeats)  # all acknowledged
    assert {name: gcp.updated(name) for name in watched} == before
    assert len(gcp.names(f"bulk/_runs/{run_id}/items/")) == items
    assert gcp.get_run(run_id) == manifest


def test_small_sync_runs_inline(gcp: GcpFanout) -> None:
    response = gcp.http("POST", "/sync", '{"pipeline": "small"}')
    assert response.status_code == 200, response.text
    assert response.json()["counts"]["written"] == 4


def test_a_message_that_is_not_a_work_item_is_acknowledged_and_dropped(gcp: GcpFanout) -> None:
    import base64

    before = gcp.pubsub.stats.failed_deliveries
    garbage = base64.b64encode(b'{"hello": "world"}').decode()
    gcp.pubsub.publish(WORK_TOPIC, [{"data": garbage, "attributes": {}}])
    assert gcp.pubsub.wait_idle(30)
    assert gcp.pubsub.stats.failed_deliveries == before
    log = gcp.functions["fanout_worker"].log_text()
    assert "not a version-1 drivepipe work item" in log
