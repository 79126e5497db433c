"""GCS permissions enforced, not read: every function runs through the permission proxy.

The five Cloud Functions are served by functions-framework with ``STORAGE_EMULATOR_HOST``
pointing at :class:`devstack.gcs_permission_proxy.GcsPermissionProxy`, which holds exactly the
bucket roles ``deploy.package_gcp`` grants the runtime service account and answers 403 (GCS's
error shape) to any call those roles do not allow. Every code path is exercised: HTTP sync,
unknown run, a first sync, an upload, its redelivery, a request file, the schedule, a fanned-out
sync over Pub/Sub (the stand-in pushes to ``fanout_worker``) and a dead letter.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from google.api_core.exceptions import Forbidden

from deploy.package_gcp import SOURCE_DIR, DeployConfig, runtime_bucket_grants
from devstack.drive_emulator.emulator import DriveEmulator
from devstack.gcp_cloudevents import (
    deliver,
    gcs_finalize_event,
    resource_from_blob,
    scheduler_event,
)
from devstack.gcp_dev import FunctionServer, start_all, storage_client
from devstack.gcs_permission_proxy import GcsPermissionProxy
from devstack.pubsub_local import PubSubStandIn, Subscription
from devstack.servers import GcsEmulator
from tests.conftest import unique_bucket_name
from tests.gcp.conftest import logs_for_event, wait_for

PROJECT = "local"
WORK_TOPIC = f"projects/{PROJECT}/topics/drivepipe-work"
DEAD_TOPIC = f"projects/{PROJECT}/topics/drivepipe-work-dead"
TARGETS = ("sync_http", "on_upload", "on_schedule", "fanout_worker", "fanout_dead_letter")
CSV = "Order ID,Units,Unit Price\nP1,3,1.00\nP2,1,2.00\n"
# The shipped pipelines plus one that fans out even a two-file folder, for the workers.
FANOUT_PIPELINE = """
[pipelines.wide]
source = { folder_id = "${DRIVE_FOLDER_ID}", include = ["sales/**/*.csv"] }
output = { url = "gs://${DRIVEPIPE_OUTPUT_BUCKET}/wide", format = "parquet" }
fanout = { min_files = 2, batch_size = 1 }
"""


@dataclass
class IamStack:
    """Functions behind the proxy, the Pub/Sub stand-in, and a direct (admin) client."""

    proxy: GcsPermissionProxy
    functions: dict[str, FunctionServer]
    pubsub: PubSubStandIn
    gcs: Any
    cfg: DeployConfig

    def http(self, method: str, path: str, body: dict[str, Any] | None = None):
        url = self.functions["sync_http"].url + path
        data = json.dumps(body) if body is not None else None
        return requests.request(method, url, data=data, timeout=120)

    def upload(self, name: str, data: str | bytes, content_type: str = "text/csv") -> Any:
        blob = self.gcs.bucket(self.cfg.input_bucket).blob(name)
        blob.upload_from_string(data, content_type=content_type)
        blob.reload()
        return blob

    def on_upload(self, blob: Any, event: Any = None) -> tuple[int, list[dict[str, Any]]]:
        event = event or gcs_finalize_event(resource_from_blob(blob))
        delivery = deliver(self.functions["on_upload"].url, event)
        return delivery.status, logs_for_event(self.functions["on_upload"], event.attributes["id"])


@pytest.fixture(scope="module")
def iam(
    gcs_emulator: GcsEmulator, drive_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[IamStack]:
    gcs = storage_client(gcs_emulator.url)
    cfg = DeployConfig(
        project=PROJECT,
        region="europe-west1",
        input_bucket=gcs.create_bucket(unique_bucket_name("iam-in")).name,
        output_bucket=gcs.create_bucket(unique_bucket_name("iam-out")).name,
        fanout=True,
    )
    config = tmp_path_factory.mktemp("iam") / "drivepipe.toml"
    shipped = (SOURCE_DIR / "drivepipe.toml").read_text(encoding="utf-8")
    config.write_text(shipped + FANOUT_PIPELINE, encoding="utf-8")
    grants = runtime_bucket_grants(cfg)
    with (
        GcsPermissionProxy(gcs_emulator.url, grants, principal=cfg.runtime_sa) as proxy,
        DriveEmulator(drive_root) as drive,
        PubSubStandIn(max_instances=2) as pubsub,
    ):
        env = {
            "DRIVEPIPE_CONFIG": str(config),
            "STORAGE_EMULATOR_HOST": proxy.url,
            "GOOGLE_CLOUD_PROJECT": PROJECT,
            "DRIVE_API_URL": drive.url,
            "DRIVE_ACCESS_TOKEN": "local-test-token",
            **cfg.env_vars(),
            "DRIVE_FOLDER_ID": drive.root_id,
            "DRIVEPIPE_FANOUT_TOPIC": WORK_TOPIC,
            "PUBSUB_EMULATOR_HOST": pubsub.host,
            "DRIVEPIPE_GCS_RETRY_SECONDS": "2",  # a refused call is final: fail fast
        }
        functions = {t: FunctionServer(t, env) for t in TARGETS}
        start_all(functions.values())
        try:
            pubsub.subscribe(
                Subscription(
                    WORK_TOPIC,
                    functions["fanout_worker"].url,
                    max_delivery_attempts=5,
                    dead_letter_topic=DEAD_TOPIC,
                )
            )
            yield IamStack(proxy, functions, pubsub, gcs, cfg)
        finally:
            for server in functions.values():
                server.stop()


def test_the_grants_are_read_off_the_deploy_script(iam: IamStack):
    assert runtime_bucket_grants(iam.cfg) == {
        iam.cfg.input_bucket: ["roles/storage.objectViewer"],
        iam.cfg.output_bucket: ["roles/storage.objectAdmin"],
    }


def test_every_function_runs_under_the_shipped_roles(iam: IamStack):
    unknown = iam.http("GET", "/runs/20240101T000000Z-00000000")  # missing object, first call
    assert unknown.status_code == 404, unknown.text

    first = iam.http("POST", "/sync", {"pipeline": "sales", "full_refresh": True})
    assert first.status_code == 200, first.text
    assert first.json()["counts"]["written"] == 2

    blob = iam.upload("incoming/sales/iam.csv", CSV)
    event = gcs_finalize_event(resource_from_blob(blob))
    status, records = iam.on_upload(blob, event)
    assert (status, records[-1]["outcome"]) == (200, "transformed"), records
    status, records = iam.on_upload(blob, event)  # redelivered: claimed once already
    assert (status, records[-1]["outcome"]) == (200, "duplicate"), records

    request = iam.upload("requests/products.json", b'{"pipeline": "products"}', "application/json")
    status, records = iam.on_upload(request)
    assert (status, records[-1]["outcome"]) == (200, "sync"), records

    scheduled = deliver(iam.functions["on_schedule"].url, scheduler_event(["sales"]))
    assert scheduled.status == 200, scheduled.text

    fanned = iam.http("POST", "/sync", {"pipeline": "wide"})
    assert fanned.status_code == 202, fanned.text
    run_id = fanned.json()["run_id"]
    done = wait_for(
        lambda: (body := iam.http("GET", f"/runs/{run_id}").json()).get("ended_at") and body,
        timeout=120,
    )
    assert done["counts"]["written"] == 2, done

    item = iam.pubsub.published[WORK_TOPIC][0]["data"]
    dead = scheduler_event(None, topic="drivepipe-work-dead", body=base64.b64decode(item).decode())
    dead_letter = deliver(iam.functions["fanout_dead_letter"].url, dead)
    assert dead_letter.status == 200, dead_letter.text

    assert iam.proxy.denied() == []
    used = iam.proxy.used()
    out, inp = iam.cfg.output_bucket, iam.cfg.input_bucket
    assert {p for p, b in used if b == out} == {
        "storage.objects.create",
        "storage.objects.delete",
        "storage.objects.get",
        "storage.objects.list",
    }
    read_input = {p for p, b in used if b == inp}
    assert "storage.objects.get" in read_input  # uploads and request files are read
    assert read_input <= {"storage.objects.get", "storage.objects.list"}  # never written


def test_a_bucket_check_through_buckets_get_is_refused_as_gcs_would(iam: IamStack):
    """The audit's bug: ``Bucket.exists()`` needs storage.buckets.get, which neither role has."""
    client = storage_client(iam.proxy.url)
    with pytest.raises(Forbidden) as refused:
        client.bucket(iam.cfg.output_bucket).exists()
    assert "storage.buckets.get" in refused.value.message
    assert refused.value.errors[0]["reason"] == "forbidden"
    assert client.bucket(iam.cfg.output_bucket).blob("absent").exists() is False  # objects.get


def test_revoking_a_permission_the_functions_use_fails_them_and_nothing_is_lost(iam: IamStack):
    blob = iam.upload("incoming/sales/revoked.csv", CSV)
    event = gcs_finalize_event(resource_from_blob(blob))
    iam.proxy.revoke("storage.objects.create")
    try:
        status, records = iam.on_upload(blob, event)
    finally:
        iam.proxy.restore()
    assert status == 503, records  # redelivered by Eventarc, not acknowledged
    assert "storage.objects.create" in records[-1]["exception"]
    assert any(d.permission == "storage.objects.create" for d in iam.proxy.denied())

    status, records = iam.on_upload(blob, event)  # the redelivery, once the grant is back
    assert (status, records[-1]["outcome"]) == (200, "transformed"), records


def test_revoking_objects_list_breaks_the_missing_object_check(iam: IamStack):
    iam.proxy.revoke("storage.objects.list")
    try:
        response = iam.http("GET", "/runs/20240101T000000Z-11111111")
    finally:
        iam.proxy.restore()
    assert response.status_code == 503, response.text
    assert "storage.objects.list" in response.json()["error"]["message"]
