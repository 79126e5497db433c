"""Drive push notifications and run notifications, proved by enforcement on the built artifacts.

A stage with ``push`` and both notification targets on (``deploy/aws-stages.json``'s settings),
its resources made as ``deploy.aws_stage commands`` prints them, each function from the built
artifacts under a role holding exactly its generated policy, against moto_server with IAM
enforcement on (tests/aws/test_enforced_permissions.py has the machinery). Drive is the
emulator: the channel ``on_schedule`` opens delivers real notifications to a loopback receiver
standing for API Gateway, whose requests (Drive's own headers, token included) are then handed
to ``api_handler`` as API Gateway proxy events. The Slack webhook is a loopback receiver too,
its URL kept in the stage's webhook secret; an SQS queue subscribed to the alerts topic shows
what SNS delivered.

Each malformed Drive file makes a run with a failed input, and every function that finishes
such a run is seen telling both targets under its own role: the webhook handing off
(``api_handler``), ``push_worker`` (its sync), ``on_schedule``, ``on_upload``, the fan-out
finalizer in ``fanout_worker`` and in ``fanout_dead_letter``, and ``failed_events``. Channel
upkeep creates a token secret and, renewing, deletes the old one under ``on_schedule``'s role.
Then a policy without ``sns:Publish`` (and one without ``secretsmanager:CreateSecret``) is
seen to fail where it should: recorded in the manifest and the schedule's result, not raised.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from deploy import aws_policy
from deploy.aws_stage import AwsStage
from devstack.moto_iam import MotoIamServer
from devstack.webhook_receiver import WebhookReceiver
from shared.storage.layout import channel_key
from tests.aws.test_clean_runtime import (
    Artifacts,
    api_event,
    artifacts,
    built,
    ok_results,
    s3_event,
    scheduled_event,
    sqs_event,
)
from tests.aws.test_enforced_permissions import (
    ACCOUNT,
    REGION,
    Enforced,
    enforced_stack,
    failure_record,
    iam_moto,
    receive,
    run,
)

__all__ = ["artifacts", "built", "iam_moto"]  # module-scoped fixtures, shared
pytestmark = pytest.mark.slow
SETTINGS = {"push": True, "notify_sns": True, "notify_webhook": True}
# A second fanned-out pipeline, whose last item is dead-lettered (the DLQ consumer finalizes).
WIDE_PIPELINE = """
[pipelines.wide]
scheduled = false
source = { folder_id = "${DRIVE_FOLDER_ID}", include = ["**/*.csv"] }
output = { url = "s3://${DRIVEPIPE_OUTPUT_BUCKET}/wide", format = "parquet" }
fanout = { min_files = 3, batch_size = 1, max_attempts = 4 }
"""
BROKEN = b"\x00\x01\x02 not a CSV \x00"
ENV = {
    "DRIVEPIPE_PUSH_SETTLE_SECONDS": "0",  # the worker runs the owed sync without waiting
    "DRIVEPIPE_CHANNEL_HOURS": "24",  # under the 48 h renewal window: each tick renews
}


@dataclass
class PushStack:
    """The enforced stage, where Drive delivers, and the Slack stand-in."""

    env: Enforced
    inbox: WebhookReceiver  # the channel's address: what API Gateway would receive from Drive
    slack: WebhookReceiver

    def write(self, relpath: str, data: bytes) -> None:
        """Save a file in Drive; the emulator logs the change now (its poller might too, but
        this does not wait for it) and notifies the open channels."""
        path = self.env.stack.drive_root / relpath
        path.write_bytes(data)
        stamp = time.time_ns() + 2_000_000_000
        os.utime(path, ns=(stamp, stamp))
        self.env.stack.drive.poll_changes()

    def settle(self) -> None:
        """Every notification Drive queued has been delivered."""
        assert self.env.stack.drive.watch.wait_idle(60)

    def read(self, key: str) -> dict[str, Any]:
        """An output object's JSON (as the admin)."""
        s3 = self.env.client("s3")
        return json.loads(
            s3.get_object(Bucket=self.env.stage.output_bucket, Key=key)["Body"].read()
        )

    def manifests(self, pipeline: str) -> dict[str, dict[str, Any]]:
        """The pipeline's run manifests by run id."""
        keys = [k for k in self.env.keys(f"{pipeline}/_runs/") if k.count("/") == 2]
        return {k.rsplit("/", 1)[1].removesuffix(".json"): self.read(k) for k in keys}

    def channel_secrets(self) -> list[str]:
        """Names of the channel-token secrets that exist."""
        prefix = self.env.stage.channel_secrets_prefix
        listed = self.env.client("secretsmanager").list_secrets(
            Filters=[{"Key": "name", "Values": [prefix]}]
        )
        return sorted(s["Name"] for s in listed["SecretList"])

    def sns_delivered(self) -> str:
        """Everything SNS delivered to the queue subscribed to the alerts topic, as text."""
        assert self.env.alerts_tap is not None
        sqs, found = self.env.client("sqs"), []
        while True:
            got = sqs.receive_message(QueueUrl=self.env.alerts_tap, MaxNumberOfMessages=10)
            if not got.get("Messages"):
                return "\n".join(found)
            found += [m["Body"] for m in got["Messages"]]


def notified(manifest: dict[str, Any]) -> list[tuple[str, bool]]:
    """(target, ok) of a manifest's notifications."""
    return [(n["target"], n["ok"]) for n in manifest.get("notifications") or []]


def push_stack(server: MotoIamServer, root: Path, edit: Any = None) -> Iterator[PushStack]:
    """The stage with push and both notification targets, and the two receivers."""
    with WebhookReceiver() as inbox, WebhookReceiver() as slack:
        stacks = enforced_stack(
            server,
            root,
            edit,
            settings=SETTINGS,
            webhook_url=slack.url,
            env={**ENV, "DRIVEPIPE_PUSH_ADDRESS": inbox.url},
            config=WIDE_PIPELINE,
        )
        env = next(stacks)
        try:
            yield PushStack(env, inbox, slack)
        finally:
            stacks.close()


@pytest.fixture
def pushed(iam_moto: MotoIamServer, tmp_path: Path) -> Iterator[PushStack]:
    yield from push_stack(iam_moto, tmp_path)


def notification_event(headers: dict[str, str]) -> dict[str, Any]:
    """What API Gateway hands the API function for Drive's POST to /drive/notifications."""
    event = api_event("POST", "/drive/notifications", "/drive/notifications")
    goog = {k: v for k, v in headers.items() if k.lower().startswith("x-goog-")}
    event["headers"] = {**event["headers"], **goog, "Content-Length": "0"}
    event["multiValueHeaders"] = {k: [v] for k, v in event["headers"].items()}
    event["requestContext"]["identity"] = {"sourceIp": "66.249.84.1", "userAgent": "APIs-Google"}
    return event


def test_push_and_notifications_pass_under_each_function_s_own_policy(
    artifacts: Artifacts, pushed: PushStack
) -> None:
    env, stage = pushed.env, pushed.env.stage
    assert set(aws_policy.functions(stage)) >= {"push_worker"}

    # 1. The schedule syncs and opens the channel: a token secret created by on_schedule.
    tick = scheduled_event(stage.function_name("on_schedule"))
    (first,) = ok_results(run(env, artifacts, "on_schedule", [tick]))
    (sales,) = first
    assert sales["channel"]["action"] == "opened", sales
    (token_secret,) = pushed.channel_secrets()
    assert token_secret.startswith(f"{stage.channel_secrets_prefix}/sales/drivepipe-")
    pushed.settle()
    assert [r.headers["X-Goog-Resource-State"] for r in pushed.inbox.received] == ["sync"]

    # 2. A malformed file lands in Drive; Drive notifies; the webhook (api_handler) checks the
    #    token from Secrets Manager, records the request and hands it to the push queue.
    pushed.write("broken.csv", BROKEN)
    pushed.settle()
    change = next(
        r for r in pushed.inbox.received if r.headers["X-Goog-Resource-State"] == "change"
    )
    (answer,) = ok_results(run(env, artifacts, "api_handler", [notification_event(change.headers)]))
    assert answer["statusCode"] == 200 and json.loads(answer["body"])["status"] == "accepted", (
        answer
    )

    # 3. push_worker consumes the queue with its role, syncs, and tells SNS and the webhook.
    push_url = env.urls[stage.push_queue]
    (worked,) = ok_results(
        run(
            env,
            artifacts,
            "push_worker",
            [sqs_event(push_url, receive(env, "push_worker", push_url, 1))],
        )
    )
    assert worked == {"batchItemFailures": []}, worked
    runs = pushed.manifests("sales")
    (push_run,) = [m for m in runs.values() if m["trigger"] == "push"]
    assert [i["path"] for i in push_run["inputs"] if i["status"] == "failed"] == ["broken.csv"]
    assert notified(push_run) == [("sns", True), ("webhook", True)], push_run["notifications"]

    # 4. The next tick renews: a new token secret, the old one deleted, by on_schedule's role;
    #    its reconcile reports the still-broken file to both targets too.
    (second,) = ok_results(run(env, artifacts, "on_schedule", [tick]))
    (sales,) = second
    assert sales["channel"]["action"] == "renewed", sales
    (renewed_secret,) = pushed.channel_secrets()
    assert renewed_secret != token_secret
    record = pushed.read(f"sales/{channel_key('sales')}")
    assert record["retiring"] == [] and record["current"]["token_ref"] == f"aws-sm:{renewed_secret}"
    schedule_run = runs_by_trigger(pushed, "sales", "schedule")[-1]
    assert notified(schedule_run) == [("sns", True), ("webhook", True)], schedule_run

    # 5. The other functions that finish runs: HTTP (inline and fanned out), the fan-out
    #    worker's finalizer, the dead-letter consumer's, an upload, a failed invocation.
    bulk, wide = ok_results(
        run(
            env,
            artifacts,
            "api_handler",
            [
                api_event("POST", "/sync", "/sync", {"pipeline": "bulk"}),
                api_event("POST", "/sync", "/sync", {"pipeline": "wide"}),
            ],
        )
    )
    assert (bulk["statusCode"], wide["statusCode"]) == (202, 202), (bulk, wide)
    work = env.urls[stage.work_queue]
    items = receive(env, "fanout_worker", work, 8)  # 4 files each, one per item
    wide_run = json.loads(wide["body"])["run_id"]
    last = next(m for m in items if json.loads(m["Body"])["run_id"] == wide_run)
    done = [m for m in items if m is not last]
    (worked,) = ok_results(run(env, artifacts, "fanout_worker", [sqs_event(work, done)]))
    assert worked == {"batchItemFailures": []}
    env.client("sqs").send_message(QueueUrl=env.stack.dlq_url, MessageBody=last["Body"])
    dead = receive(env, "fanout_dead_letter", env.stack.dlq_url, 1)
    ok_results(run(env, artifacts, "fanout_dead_letter", [sqs_event(env.stack.dlq_url, dead)]))
    bulk_run = json.loads(bulk["body"])["run_id"]
    finished = {
        "bulk": pushed.manifests("bulk")[bulk_run],
        "wide": pushed.manifests("wide")[wide_run],
    }
    for name, manifest in finished.items():
        assert manifest["counts"]["failed"] >= 1, (name, manifest["counts"])
        assert notified(manifest) == [("sns", True), ("webhook", True)], (name, manifest)

    key = "incoming/sales/broken upload.csv"
    size = env.put_input(key, BROKEN)
    (uploaded,) = ok_results(
        run(env, artifacts, "on_upload", [s3_event(stage.input_bucket, key, size)])
    )
    upload_run = pushed.manifests("sales")[uploaded[0]["run_id"]]
    assert notified(upload_run) == [("sns", True), ("webhook", True)], upload_run

    arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{stage.function_name('on_upload')}"
    lost = s3_event(stage.input_bucket, "incoming/sales/lost.csv", 10)
    failed_url = env.urls[stage.failure_queue]
    env.client("sqs").send_message(
        QueueUrl=failed_url, MessageBody=json.dumps(failure_record(arn, lost))
    )
    records = receive(env, "failed_events", failed_url, 1)
    ok_results(run(env, artifacts, "failed_events", [sqs_event(failed_url, records)]))
    (failed_run,) = runs_by_trigger(pushed, "sales", "s3:failed")
    assert notified(failed_run) == [("sns", True), ("webhook", True)], failed_run

    # Each of those runs reached both targets: SNS delivered it, the webhook received it.
    told = [push_run, schedule_run, *finished.values(), upload_run, failed_run]
    delivered = pushed.sns_delivered()
    hooked = {body["text"] for body in pushed.slack.accepted}
    for manifest in told:
        assert manifest["run_id"] in delivered, manifest["run_id"]
        assert any(manifest["run_id"] in text for text in hooked), manifest["run_id"]


def runs_by_trigger(pushed: PushStack, pipeline: str, trigger: str) -> list[dict[str, Any]]:
    """The pipeline's manifests of one trigger, oldest first."""
    found = [m for m in pushed.manifests(pipeline).values() if m["trigger"] == trigger]
    return sorted(found, key=lambda m: m["run_id"])


def without_publish_and_secret_creation(
    function: str, stage: AwsStage, policy: dict[str, Any]
) -> dict[str, Any]:
    """``sns:Publish`` cut from the API function, ``secretsmanager:CreateSecret`` from the
    schedule's."""
    if function == "api_handler":
        cut = aws_policy.without(policy, "sns:Publish", stage.arns()["alerts_topic"])
    elif function == "on_schedule":
        cut = aws_policy.without(
            policy, "secretsmanager:CreateSecret", stage.arns()["channel_secrets"]
        )
    else:
        return policy
    assert cut != policy
    return cut


def test_a_missing_publish_or_secret_creation_is_caught_and_recorded_not_raised(
    artifacts: Artifacts, iam_moto: MotoIamServer, tmp_path: Path
) -> None:
    stacks = push_stack(iam_moto, tmp_path, without_publish_and_secret_creation)
    pushed = next(stacks)
    env, stage = pushed.env, pushed.env.stage
    try:
        pushed.write("broken.csv", BROKEN)
        # No CreateSecret: the schedule's sync is done, the channel is not opened, and the
        # schedule's result says why (the next tick tries again); nothing is left behind.
        tick = scheduled_event(stage.function_name("on_schedule"))
        (result,) = ok_results(run(env, artifacts, "on_schedule", [tick]))
        (sales,) = result
        assert "summary" in sales and sales["channel"]["action"] == "error", sales
        assert "cannot create secret" in sales["channel"]["reason"], sales
        assert "AccessDenied" in sales["channel"]["reason"], sales
        assert pushed.channel_secrets() == []
        assert not env.keys(f"sales/{channel_key('sales')}")
        # No sns:Publish: the sync answers 200, its manifest records the refused delivery,
        # and the webhook still got its message.
        request = api_event("POST", "/sync", "/sync", {"pipeline": "sales", "full_refresh": True})
        (sync,) = ok_results(run(env, artifacts, "api_handler", [request]))
        assert sync["statusCode"] == 200, sync
        manifest = pushed.manifests("sales")[json.loads(sync["body"])["run_id"]]
        assert manifest["counts"]["failed"] == 1, manifest["counts"]
        sns, webhook = manifest["notifications"]
        assert (sns["target"], sns["ok"], sns["attempts"]) == ("sns", False, 1), sns
        assert "AccessDenied" in sns["error"] or "AuthorizationError" in sns["error"], sns
        assert (webhook["target"], webhook["ok"]) == ("webhook", True), webhook
        assert manifest["run_id"] not in pushed.sns_delivered()
    finally:
        stacks.close()
