"""GCS permissions enforced, not read: every function runs through the permission proxy.

The seven Cloud Functions of a deploy with fan-out and push (``package_gcp --fanout --push``)
are served by functions-framework with ``STORAGE_EMULATOR_HOST`` pointing at
:class:`devstack.gcs_permission_proxy.GcsPermissionProxy`, which holds exactly the bucket roles
``deploy.package_gcp`` grants the runtime service account and answers 403 (GCS's error shape)
to any call those roles do not allow. Pub/Sub and Secret Manager are stand-ins that enforce the
rest of what the deploy script grants (``deploy.gcp_grants``): publishing only to the topics
the service account is a publisher on, and the Secret Manager permissions of its roles, per
resource (the channel-token role on the project, since ``secrets.create`` is checked there).
Every code path is exercised: HTTP sync, unknown run, a first sync, an upload, its redelivery,
a request file, the schedule, a fanned-out sync over Pub/Sub (the stand-in pushes to
``fanout_worker``), a dead letter, and push: the schedule opening and renewing the channel
(token secrets created and deleted), Drive's real notifications to ``drive_notifications``,
the push topic to ``push_worker``, and a run notification on the alerts topic.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from google.api_core.exceptions import Forbidden

from deploy.gcp_grants import runtime_secret_grants, runtime_topic_grants
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
from devstack.secretmanager_local import SecretManagerStandIn
from devstack.servers import GcsEmulator, free_port
from tests.conftest import unique_bucket_name
from tests.gcp.conftest import logs_for_event, wait_for

PROJECT = "local"
WORK_TOPIC = f"projects/{PROJECT}/topics/drivepipe-work"
DEAD_TOPIC = f"projects/{PROJECT}/topics/drivepipe-work-dead"
PUSH_TOPIC = f"projects/{PROJECT}/topics/drivepipe-push"
ALERTS_TOPIC = f"projects/{PROJECT}/topics/drivepipe-alerts"
TARGETS = (
    "sync_http",
    "on_upload",
    "on_schedule",
    "fanout_worker",
    "fanout_dead_letter",
    "drive_notifications",
    "push_worker",
)
BROKEN = b"Order ID,Units\x00\x01\x02 not a CSV \x00"
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
    secrets: SecretManagerStandIn
    drive: DriveEmulator

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
        push=True,
    )
    root = tmp_path_factory.mktemp("iam")
    config = root / "drivepipe.toml"
    shipped = (SOURCE_DIR / "drivepipe.toml").read_text(encoding="utf-8")
    config.write_text(shipped + FANOUT_PIPELINE, encoding="utf-8")
    own_drive = shutil.copytree(drive_root, root / "drive")  # these tests change the folder
    grants = runtime_bucket_grants(cfg)
    webhook_port = free_port()
    with (
        GcsPermissionProxy(gcs_emulator.url, grants, principal=cfg.runtime_sa) as proxy,
        DriveEmulator(own_drive) as drive,
        PubSubStandIn(max_instances=2, publishers=runtime_topic_grants(cfg)) as pubsub,
        SecretManagerStandIn(grants=runtime_secret_grants(cfg)) as secrets,
    ):
        env = {
            "DRIVEPIPE_CONFIG": str(config),
            "STORAGE_EMULATOR_HOST": proxy.url,
            "GOOGLE_CLOUD_PROJECT": PROJECT,
            "DRIVE_API_URL": drive.url,
            "DRIVE_ACCESS_TOKEN": "local-test-token",
            **cfg.env_vars(),  # with push: DRIVEPIPE_PUSH(_TOPIC), DRIVEPIPE_CHANNEL_SECRETS
            "DRIVE_FOLDER_ID": drive.root_id,
            "DRIVEPIPE_FANOUT_TOPIC": WORK_TOPIC,
            "PUBSUB_EMULATOR_HOST": pubsub.host,
            "SECRET_MANAGER_EMULATOR_HOST": secrets.host,
            # the webhook's local address instead of its cloudfunctions.net URL
            "DRIVEPIPE_PUSH_ADDRESS": f"http://127.0.0.1:{webhook_port}/",
            "DRIVEPIPE_PUSH_SETTLE_SECONDS": "0",
            "DRIVEPIPE_CHANNEL_HOURS": "24",  # under the 48 h renewal window: each tick renews
            "DRIVEPIPE_NOTIFY_BACKOFF_SECONDS": "0",
            "DRIVEPIPE_GCS_RETRY_SECONDS": "2",  # a refused call is final: fail fast
        }
        ports = {"drive_notifications": webhook_port}
        functions = {t: FunctionServer(t, env, port=ports.get(t)) for t in TARGETS}
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
            pubsub.subscribe(Subscription(PUSH_TOPIC, functions["push_worker"].url))
            yield IamStack(proxy, functions, pubsub, gcs, cfg, secrets, drive)
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


def _runs(iam: IamStack, pipeline: str = "sales") -> dict[str, dict[str, Any]]:
    """The pipeline's manifests by run id (read directly, as an admin)."""
    bucket = iam.gcs.bucket(iam.cfg.output_bucket)
    found = {}
    for blob in bucket.list_blobs(prefix=f"{pipeline}/_runs/"):
        if blob.name.count("/") == 2 and blob.name.endswith(".json"):
            found[blob.name.rsplit("/", 1)[1][:-5]] = json.loads(blob.download_as_bytes())
    return found


def _tokens(iam: IamStack) -> list[str]:
    """The channel-token secrets that exist."""
    return sorted(n for n in iam.secrets.secrets if "/secrets/drivepipe-channel-sales-" in n)


def _alerts(iam: IamStack) -> str:
    """Every run notification published on the alerts topic, decoded."""
    published = iam.pubsub.published.get(ALERTS_TOPIC, [])
    return "\n".join(base64.b64decode(m["data"]).decode() for m in published)


def _put_broken(iam: IamStack) -> None:
    """Save a malformed CSV in the Drive folder (a change the emulator logs and notifies)."""
    path = iam.drive.tree.root / "sales" / "2026" / "broken.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(BROKEN)
    stamp = time.time_ns() + 2_000_000_000
    os.utime(path, ns=(stamp, stamp))
    iam.drive.poll_changes()


def _schedule(iam: IamStack) -> None:
    scheduled = deliver(iam.functions["on_schedule"].url, scheduler_event(["sales"]))
    assert scheduled.status == 200, scheduled.text


def test_push_and_run_notifications_run_under_the_shipped_roles(iam: IamStack):
    # The schedule keeps the channel open: the first tick opens one (or renews the one an
    # earlier test's tick opened), the next renews it (a 24 h channel is inside the 48 h
    # window): a new token secret is created on the project, the old one deleted.
    marks = (len(iam.proxy.decisions), len(iam.secrets.decisions), len(iam.pubsub.refused))
    _schedule(iam)
    before = _tokens(iam)
    assert len(before) == 1, iam.secrets.secrets
    _schedule(iam)
    after = _tokens(iam)
    assert len(after) == 1 and after != before, (before, after)

    # A malformed file in Drive: Drive notifies drive_notifications (token read from Secret
    # Manager, the request recorded in GCS), which publishes to the push topic; the stand-in
    # delivers it to push_worker, whose sync quarantines the file and tells the alerts topic.
    seen = set(_runs(iam))
    _put_broken(iam)
    assert iam.drive.watch.wait_idle(60)
    changes = iam.drive.watch.sent("change")
    assert changes and all(d.status == 200 for d in changes), changes
    pushed = wait_for(
        lambda: [m for k, m in _runs(iam).items() if k not in seen and m["trigger"] == "push"],
        timeout=120,
    )
    (run,) = pushed
    assert [i["path"] for i in run["inputs"] if i["status"] == "failed"] == [
        "sales/2026/broken.csv"
    ]
    assert [(n["target"], n["ok"]) for n in run["notifications"]] == [("pubsub", True)], run
    assert run["run_id"] in _alerts(iam)

    gcs, secrets = iam.proxy.decisions[marks[0] :], iam.secrets.decisions[marks[1] :]
    assert [d for d in gcs if not d.allowed] == []  # (earlier tests refuse on purpose)
    assert [d for d in secrets if not d[2]] == []
    assert iam.pubsub.refused[marks[2] :] == []
    used = {p for p, r, ok in secrets}
    assert used == {
        "secretmanager.secrets.create",  # on the project: a secret per new channel
        "secretmanager.versions.add",
        "secretmanager.versions.access",  # the webhook checks the token
        "secretmanager.secrets.delete",  # the renewed channel's token
    }
    assert set(iam.pubsub.published) >= {PUSH_TOPIC, ALERTS_TOPIC}


def test_without_the_project_level_create_or_the_publisher_grant_the_failure_is_recorded(
    iam: IamStack,
):
    """``secretmanager.secrets.create`` only on the project works: without it the schedule
    cannot open a channel (its sync still runs, the upkeep reports the refusal); without the
    publisher grant on the alerts topic a run still succeeds, its manifest says the message
    was not delivered."""
    project = f"projects/{PROJECT}"
    granted = dict(iam.secrets.grants or {})
    publishers = iam.pubsub.publishers
    assert granted[project] >= {"secretmanager.secrets.create"}
    iam.secrets.grants = {**granted, project: granted[project] - {"secretmanager.secrets.create"}}
    iam.pubsub.publishers = (publishers or frozenset()) - {ALERTS_TOPIC}
    tokens = _tokens(iam)
    try:
        _put_broken(iam)  # with a channel open, its push sync runs (and is refused a message)
        assert iam.drive.watch.wait_idle(60) and iam.pubsub.wait_idle(120)  # before our sync
        _schedule(iam)  # open or renew: refused at the create, any current channel is kept
        assert ("secretmanager.secrets.create", project) in iam.secrets.denied()
        assert _tokens(iam) == tokens
        synced = iam.http("POST", "/sync", {"pipeline": "sales", "full_refresh": True})
        assert synced.status_code == 200, synced.text
        manifest = synced.json()
        assert manifest["counts"]["failed"] == 1, manifest["counts"]
        (note,) = _runs(iam)[manifest["run_id"]]["notifications"]
        assert (note["target"], note["ok"]) == ("pubsub", False), note
        assert "403" in note["error"], note
        assert ALERTS_TOPIC in iam.pubsub.refused
    finally:
        iam.secrets.grants = granted
        iam.pubsub.publishers = publishers
