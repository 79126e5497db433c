"""Permissions proved by enforcement: every function, from the built artifacts, under exactly
its own policy, against moto_server with IAM enforcement on.

The stage here is generated the deployed way (:class:`deploy.aws_stage.AwsStage`, moto's
account and the test's bucket names): its environment is the functions' environment, and
each function's credentials are a session of a role holding exactly
:func:`deploy.aws_policy.function_policy` (``sts:AssumeRole``, as Lambda does with the
execution role). Once the fixtures exist, the server authenticates and authorizes every
request (``devstack/moto_iam.py``: moto's ``INITIAL_NO_AUTH_ACTION_COUNT`` enforcement, with
batch actions, ``?`` wildcards and Secrets Manager, SNS and queue-name resources made to behave
as on AWS). Logs are not exercised (the Lambda runtime writes them, not the code). Push and run
notifications under enforcement: tests/aws/test_enforced_push_notify.py.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from deploy import aws_policy
from deploy.aws_commands import queues
from deploy.aws_stage import AwsStage
from devstack.drive_emulator.emulator import DriveEmulator
from devstack.moto_iam import MotoIamServer
from tests.aws.test_clean_runtime import (
    API_KEY,
    CSV,
    FANOUT_PIPELINE,
    SHIPPED_CONFIG,
    Artifacts,
    CleanStack,
    Run,
    api_event,
    artifacts,
    built,
    invoke,
    ok_results,
    s3_event,
    scheduled_event,
    sqs_event,
    xlsx_bytes,
)

__all__ = ["artifacts", "built"]  # module-scoped fixtures, shared with the clean-runtime test
pytestmark = pytest.mark.slow
ACCOUNT = "123456789012"  # moto's default account
REGION = "us-east-1"
ALL = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


@pytest.fixture(scope="module")
def iam_moto() -> Iterator[MotoIamServer]:
    """A moto_server of our own: enforcement is server-wide, so never the session's."""
    with MotoIamServer() as server:
        yield server


@dataclass
class Enforced:
    """An enforcing stack: the stage, an admin for setup and checks, one session per function."""

    server: MotoIamServer
    stage: AwsStage
    stack: CleanStack
    admin: dict[str, str]
    sessions: dict[str, dict[str, str]]
    urls: dict[str, str] = field(default_factory=dict)  # queue name -> URL
    alerts_tap: str | None = None  # a queue subscribed to the alerts topic (what SNS delivered)

    def client(self, service: str, credentials: dict[str, str] | None = None) -> Any:
        """A boto3 client with ``credentials`` (the admin's by default)."""
        creds = credentials or self.admin
        return boto3.session.Session().client(
            service,
            endpoint_url=self.server.url,
            region_name=REGION,
            aws_access_key_id=creds["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=creds["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=creds.get("AWS_SESSION_TOKEN"),
        )

    def as_function(self, function: str) -> CleanStack:
        """The stack's environment with ``function``'s own credentials."""
        return dataclasses.replace(self.stack, env={**self.stack.env, **self.sessions[function]})

    def keys(self, prefix: str) -> list[str]:
        """Output keys under ``prefix`` (read as the admin)."""
        pages = self.client("s3").get_paginator("list_objects_v2")
        found = pages.paginate(Bucket=self.stage.output_bucket, Prefix=prefix)
        return [obj["Key"] for page in found for obj in page.get("Contents", [])]

    def put_input(self, key: str, body: bytes) -> int:
        """Upload to the input bucket as the admin (a user's upload); returns the size."""
        self.client("s3").put_object(Bucket=self.stage.input_bucket, Key=key, Body=body)
        return len(body)


def _session(
    sts: Any, iam: Any, stage: AwsStage, function: str, policy: dict[str, Any]
) -> dict[str, str]:
    role = iam.create_role(
        RoleName=stage.function_name(function), AssumeRolePolicyDocument=json.dumps(TRUST)
    )["Role"]
    iam.put_role_policy(
        RoleName=role["RoleName"], PolicyName="function", PolicyDocument=json.dumps(policy)
    )
    creds = sts.assume_role(RoleArn=role["Arn"], RoleSessionName=function)["Credentials"]
    return {
        "AWS_ACCESS_KEY_ID": creds["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
        "AWS_SESSION_TOKEN": creds["SessionToken"],
    }


PolicyEdit = Callable[[str, AwsStage, dict[str, Any]], dict[str, Any]]


def enforced_stack(
    server: MotoIamServer,
    root: Path,
    edit: PolicyEdit | None = None,
    *,
    settings: dict[str, Any] | None = None,
    webhook_url: str = "",
    env: dict[str, str] | None = None,
    config: str = "",
) -> Iterator[Enforced]:
    """Build the stage on ``server`` with enforcement off, then turn it on; ``edit`` changes
    a function's generated policy (to show what a missing permission does).

    ``settings`` are the stage's (``deploy/aws-stages.json``'s fields, e.g. ``push``); what
    they call for is created the way ``deploy.aws_stage commands`` prints it: every queue of
    :func:`deploy.aws_commands.queues`, the alerts topic, the webhook secret (holding
    ``webhook_url``). ``env`` is added to the functions' environment, ``config`` to the
    pipelines file."""
    server.enforce(after=10**12)  # off while the fixtures are made
    suffix = uuid.uuid4().hex[:8]
    stage = AwsStage(
        name=f"t{suffix}",
        account=ACCOUNT,
        region=REGION,
        input_bucket=f"perm-in-{suffix}",
        output_bucket=f"perm-out-{suffix}",
        **(settings or {}),
    )
    setup = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    base = Enforced(server, stage, None, setup, {})  # type: ignore[arg-type]
    s3, sqs, iam, sts = (base.client(s) for s in ("s3", "sqs", "iam", "sts"))
    for bucket in (stage.input_bucket, stage.output_bucket):
        s3.create_bucket(Bucket=bucket)
    urls = {
        q: sqs.create_queue(QueueName=q, Attributes={"VisibilityTimeout": "1800"})["QueueUrl"]
        for q, _, _ in queues(stage)
    }
    tap = None
    if stage.notify_sns:
        topic = base.client("sns").create_topic(Name=stage.alerts_topic)["TopicArn"]
        assert topic == stage.arns()["alerts_topic"]
        tap = sqs.create_queue(QueueName=f"{stage.alerts_topic}-tap")["QueueUrl"]
        tap_arn = sqs.get_queue_attributes(QueueUrl=tap, AttributeNames=["QueueArn"])
        base.client("sns").subscribe(
            TopicArn=topic, Protocol="sqs", Endpoint=tap_arn["Attributes"]["QueueArn"]
        )
    secrets = base.client("secretsmanager")
    secret = secrets.create_secret(
        Name=stage.secret_name, SecretString=json.dumps({"DRIVE_API_KEY": API_KEY})
    )
    if stage.notify_webhook:
        secrets.create_secret(Name=stage.webhook_secret_name, SecretString=webhook_url)
    admin_name = f"admin-{suffix}"  # the server outlives one test
    iam.create_user(UserName=admin_name)
    iam.put_user_policy(UserName=admin_name, PolicyName="all", PolicyDocument=json.dumps(ALL))
    key = iam.create_access_key(UserName=admin_name)["AccessKey"]
    admin = {
        "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
    }
    wanted = {f: aws_policy.function_policy(f, stage) for f in aws_policy.functions(stage)}
    if edit is not None:
        wanted = {f: edit(f, stage, p) for f, p in wanted.items()}
    sessions = {f: _session(sts, iam, stage, f, p) for f, p in wanted.items()}
    pipelines = root / "drivepipe.toml"
    pipelines.write_text(SHIPPED_CONFIG.read_text() + FANOUT_PIPELINE + config)
    drive_root = root / "drive"
    drive_root.mkdir()
    for name in ("q1.csv", "q2.csv", "q3.csv"):
        (drive_root / name).write_text(CSV)
    (drive_root / "west.xlsx").write_bytes(xlsx_bytes())
    with DriveEmulator(drive_root, api_keys=[API_KEY]) as drive:
        functions_env = {
            **stage.environment(),  # the generated stage environment, as deployed
            "AWS_ENDPOINT_URL": server.url,
            "DRIVE_API_URL": drive.url,
            "DRIVE_SECRET_ARN": secret["ARN"],
            "DRIVE_FOLDER_ID": drive.root_id,
            "DRIVEPIPE_CONFIG": str(pipelines),
            "DRIVEPIPE_NOTIFY_BACKOFF_SECONDS": "0",  # a failed delivery is not waited for
            **(env or {}),
        }
        stack = CleanStack(
            server,  # type: ignore[arg-type]
            drive,
            drive_root,
            stage.input_bucket,
            stage.output_bucket,
            urls.get(stage.work_queue, ""),
            urls.get(stage.dead_letter_queue, ""),
            functions_env,
        )
        server.enforce()
        try:
            yield Enforced(server, stage, stack, admin, sessions, urls, tap)
        finally:
            server.enforce(after=10**12)


@pytest.fixture
def enforced(iam_moto: MotoIamServer, tmp_path: Path) -> Iterator[Enforced]:
    """The stage with the generated policies, enforcement on."""
    yield from enforced_stack(iam_moto, tmp_path)


def receive(env: Enforced, function: str, queue_url: str, expected: int) -> list[dict[str, Any]]:
    """Receive as the consuming function's role would (the event source mapping's poller)."""
    sqs = env.client("sqs", env.sessions[function])
    messages: list[dict[str, Any]] = []
    for _ in range(30):
        got = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, AttributeNames=["All"], WaitTimeSeconds=1
        )
        messages += got.get("Messages", [])
        if len(messages) >= expected:
            break
    assert len(messages) == expected, messages
    return messages


def run(env: Enforced, art: Artifacts, function: str, events: list[dict[str, Any]]) -> Run:
    """One function, from the artifacts, under its own role."""
    return invoke(art, function, env.as_function(function), events)


def failure_record(function_arn: str, event: dict[str, Any]) -> dict[str, Any]:
    """What Lambda sends to the on-failure destination after the last retry."""
    return {
        "version": "1.0",
        "timestamp": "2026-01-01T00:03:12.345Z",
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": f"{function_arn}:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3,
        },
        "requestPayload": event,
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        },
        "responsePayload": {
            "errorType": "ModuleNotFoundError",
            "errorMessage": "No module named 'x'",
        },
    }


def test_every_function_passes_under_exactly_its_policy(
    artifacts: Artifacts, enforced: Enforced
) -> None:
    env, stage = enforced, enforced.stage
    # HTTP: health, an inline sync (Drive secret, outputs), a fanned-out sync (SQS), a manifest.
    health, sync, bulk = ok_results(
        run(
            env,
            artifacts,
            "api_handler",
            [
                api_event("GET", "/health", "/health"),
                api_event("POST", "/sync", "/sync", {"pipeline": "sales"}),
                api_event("POST", "/sync", "/sync", {"pipeline": "bulk"}),
            ],
        )
    )
    assert (health["statusCode"], sync["statusCode"], bulk["statusCode"]) == (200, 200, 202), (
        sync,
        bulk,
    )
    manifest = json.loads(sync["body"])
    assert manifest["counts"]["written"] == 4 and manifest["counts"]["failed"] == 0, manifest
    (got,) = ok_results(
        run(
            env,
            artifacts,
            "api_handler",
            [api_event("GET", "/runs/{run_id}", f"/runs/{manifest['run_id']}")],
        )
    )
    assert got["statusCode"] == 200, got

    # SQS: the worker (and the dead-letter consumer) receive with their own roles.
    messages = receive(env, "fanout_worker", env.stack.queue_url, 3)
    (worked,) = ok_results(
        run(env, artifacts, "fanout_worker", [sqs_event(env.stack.queue_url, messages)])
    )
    assert worked == {"batchItemFailures": []}
    bulk_run = json.loads(bulk["body"])["run_id"]
    assert any(k.endswith(f"bulk/_runs/{bulk_run}.json") for k in env.keys("bulk/_runs/")), (
        "not finalized"
    )
    sqs_admin = env.client("sqs")
    sqs_admin.send_message(QueueUrl=env.stack.dlq_url, MessageBody=messages[0]["Body"])
    dead = receive(env, "fanout_dead_letter", env.stack.dlq_url, 1)
    (settled,) = ok_results(
        run(env, artifacts, "fanout_dead_letter", [sqs_event(env.stack.dlq_url, dead)])
    )
    assert settled == {"batchItemFailures": []}

    # S3: a workbook and a request file, read from the input bucket.
    xlsx_key, request_key = "incoming/sales/west (2).xlsx", "requests/req-1.json"
    size = env.put_input(xlsx_key, xlsx_bytes())
    request_size = env.put_input(request_key, json.dumps({"pipeline": "sales"}).encode())
    uploaded, requested = ok_results(
        run(
            env,
            artifacts,
            "on_upload",
            [
                s3_event(stage.input_bucket, xlsx_key, size),
                s3_event(stage.input_bucket, request_key, request_size),
            ],
        )
    )
    assert [r["outcome"] for r in uploaded + requested] == ["transformed", "sync"], (
        uploaded,
        requested,
    )

    # EventBridge.
    (scheduled,) = ok_results(
        run(env, artifacts, "on_schedule", [scheduled_event(stage.function_name("on_schedule"))])
    )
    assert [r["pipeline"] for r in scheduled] == ["sales"] and "summary" in scheduled[0], scheduled

    # The failure destination: a failed upload's record, written to the pipeline's manifest.
    arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{stage.function_name('on_upload')}"
    lost = s3_event(stage.input_bucket, "incoming/sales/lost.csv", 10)
    sqs_admin.send_message(
        QueueUrl=sqs_admin.get_queue_url(QueueName=stage.failure_queue)["QueueUrl"],
        MessageBody=json.dumps(failure_record(arn, lost)),
    )
    failed_url = sqs_admin.get_queue_url(QueueName=stage.failure_queue)["QueueUrl"]
    records = receive(env, "failed_events", failed_url, 1)
    (recorded,) = ok_results(run(env, artifacts, "failed_events", [sqs_event(failed_url, records)]))
    assert recorded == {"batchItemFailures": []}
    manifests = [
        json.loads(env.client("s3").get_object(Bucket=stage.output_bucket, Key=k)["Body"].read())
        for k in env.keys("sales/_runs/")
        if k.count("/") == 2
    ]
    failed = [m for m in manifests if m["trigger"] == "s3:failed"]
    assert [i["path"] for m in failed for i in m["inputs"]] == ["lost.csv"], failed
    # ...and told the alerts topic, under failed_events' own role (sns:Publish on the topic).
    assert [(n["target"], n["ok"]) for n in failed[0]["notifications"]] == [("sns", True)], failed


def test_no_function_may_write_the_input_bucket(enforced: Enforced) -> None:
    for function, session in enforced.sessions.items():
        s3 = enforced.client("s3", session)
        with pytest.raises(ClientError, match="AccessDenied"):
            s3.put_object(Bucket=enforced.stage.input_bucket, Key="incoming/sales/x.csv", Body=b"a")
        with pytest.raises(ClientError, match="AccessDenied"):
            s3.delete_object(Bucket=enforced.stage.input_bucket, Key="requests/r.json")
        if "input:read" not in aws_policy.GRANTS[function]:
            with pytest.raises(ClientError, match="AccessDenied"):
                s3.get_object(Bucket=enforced.stage.input_bucket, Key="requests/r.json")


def without_output_put(function: str, stage: AwsStage, policy: dict[str, Any]) -> dict[str, Any]:
    """``s3:PutObject`` on the output bucket removed from the HTTP and upload functions."""
    if function not in ("api_handler", "on_upload"):
        return policy
    cut = aws_policy.without(policy, "s3:PutObject", f"arn:aws:s3:::{stage.output_bucket}")
    assert cut != policy and "s3:PutObject" not in json.dumps(cut)
    return cut


def test_removing_put_object_on_the_output_bucket_is_caught(
    artifacts: Artifacts, iam_moto: MotoIamServer, tmp_path: Path
) -> None:
    """The enforcement sees a missing permission: without ``s3:PutObject`` on the output
    bucket, a sync answers 503 and an upload's invocation fails (so Lambda retries it)."""
    stacks = enforced_stack(iam_moto, tmp_path, without_output_put)
    env = next(stacks)
    try:
        request = api_event("POST", "/sync", "/sync", {"pipeline": "sales"})
        (sync,) = ok_results(run(env, artifacts, "api_handler", [request]))
        assert sync["statusCode"] == 503, sync
        assert "AccessDenied" in sync["body"], sync
        assert not [k for k in env.keys("sales/") if k.endswith(".parquet")]
        key = "incoming/sales/q9.csv"
        size = env.put_input(key, CSV.encode())
        (result,) = run(
            env, artifacts, "on_upload", [s3_event(env.stage.input_bucket, key, size)]
        ).results
        assert not result["ok"], result  # raised: Lambda retries, then the failure queue
        assert "AccessDenied" in result["message"], result
    finally:
        stacks.close()
