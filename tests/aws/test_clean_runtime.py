"""The built artifacts, alone, in a clean interpreter: every Lambda handler with real event shapes.

``deployment.zip`` is unzipped to ``task/`` (Lambda's ``/var/task``) and ``layer.zip`` to
``opt/`` (``/opt``). Each function runs in its own ``python -I -S`` process
(tests/aws/lambda_runner.py) whose ``sys.path`` holds only those two folders and the standard
library, and whose environment holds only what Lambda and the stage set, with the endpoints,
buckets, queues and secret pointed at moto_server and the Drive emulator on 127.0.0.1. The
handler names and variables are read from the generated ``chalice.tf.json``, as deployed.

Drive credentials come the deployed way, from a Secrets Manager secret (``DRIVE_SECRET_ARN``),
so the pruned botocore serves secretsmanager, s3 and sqs here. A layer built without the xlsx
engines shows that a dependency missing from an artifact fails the XLSX invocation.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import subprocess
import sys
import time
import urllib.parse
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from deploy import package_aws
from deploy.layer import LayerSpec, build_layer
from deploy.package_aws import PackageError, PackageReport
from devstack.drive_emulator.emulator import DriveEmulator
from devstack.servers import MotoServer
from shared.storage.layout import push_requested_key

pytestmark = pytest.mark.slow
RUNNER = Path(__file__).with_name("lambda_runner.py")
REGION = "us-east-1"
ACCOUNT = "123456789012"
API_KEY = "clean-runtime-key"
SHIPPED_CONFIG = package_aws.APP_DIR / "chalicelib" / "drivepipe.toml"
# A second pipeline that fans out, so the SQS workers get real work items from a real plan.
FANOUT_PIPELINE = """
[pipelines.bulk]
scheduled = false
source = { folder_id = "${DRIVE_FOLDER_ID}", include = ["**/*.csv"] }
output = { url = "s3://${DRIVEPIPE_OUTPUT_BUCKET}/bulk", format = "parquet" }
fanout = { min_files = 3, batch_size = 1, max_attempts = 4 }
"""
CSV = "Region Name,Units\nnorth,3\nsouth,5\n"
RUN_TIMEOUT = 240


def xlsx_bytes() -> bytes:
    """A one-sheet workbook."""
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["Region Name", "Units"])
    sheet.append(["west", 7])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def unzip(zip_path: Path, into: Path) -> Path:
    """Extract ``zip_path`` into ``into``; returns ``into``."""
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(into)
    return into


@dataclass
class Artifacts:
    """The unzipped function and layer, and the functions as Terraform deploys them."""

    task: Path
    layer_python: Path
    functions: dict[str, dict[str, Any]]
    report: PackageReport


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> PackageReport:
    """``deployment.zip`` + ``layer.zip`` for the dev stage, as ``make package-aws`` builds them."""
    out = tmp_path_factory.mktemp("clean-aws") / "out"
    try:
        return package_aws.build("dev", out, "terraform")
    except PackageError as exc:
        if "pip download failed" in str(exc) and "NewConnectionError" in str(exc):
            pytest.skip(f"PyPI unreachable and the layer's wheels are not cached: {exc}")
        raise


def _artifacts(report: PackageReport, layer_zip: Path, root: Path) -> Artifacts:
    tf = json.loads((report.zip_path.parent / "chalice.tf.json").read_text())
    return Artifacts(
        unzip(report.zip_path, root / "task"),
        unzip(layer_zip, root / "opt") / "python",
        tf["resource"]["aws_lambda_function"],
        report,
    )


@pytest.fixture(scope="module")
def artifacts(built: PackageReport, tmp_path_factory: pytest.TempPathFactory) -> Artifacts:
    """The dev stage's artifacts, unzipped."""
    assert built.layer is not None
    return _artifacts(built, built.layer.zip_path, tmp_path_factory.mktemp("unzipped"))


@dataclass
class CleanStack:
    """moto_server resources and a Drive emulator for one test, and the functions' env."""

    moto: MotoServer
    drive: DriveEmulator
    drive_root: Path
    input_bucket: str
    output_bucket: str
    queue_url: str
    dlq_url: str
    env: dict[str, str]

    def keys(self, prefix: str) -> list[str]:
        """Keys in the output bucket under ``prefix``."""
        pages = (
            self.moto.client("s3")
            .get_paginator("list_objects_v2")
            .paginate(Bucket=self.output_bucket, Prefix=prefix)
        )
        return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


@pytest.fixture
def clean_stack(moto_server: MotoServer, tmp_path: Path) -> Iterator[CleanStack]:
    """Fresh buckets, work queue + DLQ and Drive secret on moto_server; a Drive folder of
    three CSVs and a workbook, served with API-key auth."""
    suffix = uuid.uuid4().hex[:10]
    input_bucket = moto_server.create_bucket(f"clean-in-{suffix}")
    output_bucket = moto_server.create_bucket(f"clean-out-{suffix}")
    sqs = moto_server.client("sqs")
    dlq_url = sqs.create_queue(QueueName=f"clean-dlq-{suffix}")["QueueUrl"]
    queue_url = sqs.create_queue(
        QueueName=f"clean-work-{suffix}", Attributes={"VisibilityTimeout": "1800"}
    )["QueueUrl"]
    secret = moto_server.client("secretsmanager").create_secret(
        Name=f"drivepipe/clean-{suffix}/drive", SecretString=json.dumps({"DRIVE_API_KEY": API_KEY})
    )
    config = tmp_path / "drivepipe.toml"
    config.write_text(SHIPPED_CONFIG.read_text() + FANOUT_PIPELINE)
    drive_root = tmp_path / "drive"
    drive_root.mkdir()
    for name in ("q1.csv", "q2.csv", "q3.csv"):
        (drive_root / name).write_text(CSV)
    (drive_root / "west.xlsx").write_bytes(xlsx_bytes())
    with DriveEmulator(drive_root, api_keys=[API_KEY]) as drive:
        env = {
            "AWS_ENDPOINT_URL": moto_server.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "DRIVE_API_URL": drive.url,
            "DRIVE_SECRET_ARN": secret["ARN"],
            "DRIVE_FOLDER_ID": drive.root_id,
            "DRIVEPIPE_INPUT_BUCKET": input_bucket,
            "DRIVEPIPE_OUTPUT_BUCKET": output_bucket,
            "DRIVEPIPE_CONFIG": str(config),
            "DRIVEPIPE_FANOUT_QUEUE": f"clean-work-{suffix}",
            "DRIVEPIPE_FANOUT_DLQ": f"clean-dlq-{suffix}",
        }
        yield CleanStack(
            moto_server, drive, drive_root, input_bucket, output_bucket, queue_url, dlq_url, env
        )


def lambda_env(artifacts: Artifacts, function: str, stack: CleanStack) -> dict[str, str]:
    """What Lambda sets, the function's variables from chalice.tf.json, the stack's values."""
    deployed = artifacts.functions[function]
    name = str(deployed["function_name"])
    return {
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(deployed["memory_size"]),
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.11",
        "LAMBDA_TASK_ROOT": str(artifacts.task),
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        **{k: str(v) for k, v in deployed["environment"]["variables"].items()},
        **stack.env,
    }


@dataclass
class Run:
    """What one function process reported."""

    meta: dict[str, Any]
    results: list[dict[str, Any]]
    import_error: dict[str, Any] | None
    stderr: str


def invoke(
    artifacts: Artifacts,
    function: str,
    stack: CleanStack,
    events: list[dict[str, Any]],
    imports: tuple[str, ...] = (),
) -> Run:
    """Run ``function`` (its handler from chalice.tf.json) on ``events`` in a clean process."""
    deployed = artifacts.functions[function]
    request = {
        "handler": deployed["handler"],
        "function_name": deployed["function_name"],
        "memory_mb": deployed["memory_size"],
        "timeout_s": deployed["timeout"],
        "events": events,
        "imports": list(imports),
    }
    done = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            str(RUNNER),
            str(artifacts.task),
            str(artifacts.layer_python),
            str(runtime_sdk(artifacts.task.parent)),
        ],
        input=json.dumps(request),
        env=lambda_env(artifacts, function, stack),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        cwd=artifacts.task,
    )
    tagged: dict[str, list[Any]] = {"meta": [], "result": [], "import": []}
    for line in done.stdout.splitlines():
        tag, _, payload = line.partition(" ")
        if tag.startswith("@@") and tag[2:] in tagged:
            tagged[tag[2:]].append(json.loads(payload))
    assert tagged["meta"], f"runner failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    imported = tagged["import"][0] if tagged["import"] else None
    return Run(tagged["meta"][0], tagged["result"], imported, done.stderr)


def ok_results(run: Run) -> list[Any]:
    """Every result's value; fails on an import error or a raised exception, with the logs."""
    assert run.import_error is None, run.import_error["traceback"] + run.stderr
    failed = [r for r in run.results if not r["ok"]]
    assert not failed, failed[0]["traceback"] + "\n" + run.stderr[-3000:]
    return [r["result"] for r in run.results]


OLD_SDK = (
    "raise ImportError(\"the Lambda runtime's own {name} (1.34.145) was imported: it rejects "
    "put_object(IfNoneMatch=...); the layer's must come first on sys.path\")\n"
)


def runtime_sdk(root: Path) -> Path:
    """A stand-in for the runtime's ``/var/runtime``: a boto3 and a botocore that fail on
    import. Lambda puts it after ``/opt/python``; if a function ever imported the runtime's
    SDK (old, without ``IfNoneMatch``) instead of the layer's, it would fail here."""
    runtime = root / "var-runtime"
    for name in ("boto3", "botocore"):
        (runtime / name).mkdir(parents=True, exist_ok=True)
        (runtime / name / "__init__.py").write_text(OLD_SDK.format(name=name))
    return runtime


# ---- real event shapes ----------------------------------------------------------------------
def api_event(method: str, resource: str, path: str, body: Any = None) -> dict[str, Any]:
    """An API Gateway REST API proxy event (payload 1.0), as an IAM-authorized call sends it."""
    params = {"run_id": path.rsplit("/", 1)[-1]} if "{run_id}" in resource else None
    headers = {
        "Content-Type": "application/json",
        "Host": "abc123.execute-api.us-east-1.amazonaws.com",
    }
    now = time.time()
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": params,
        "stageVariables": None,
        "requestContext": {
            "resourceId": "abc123",
            "resourcePath": resource,
            "httpMethod": method,
            "extendedRequestId": "c5fMAHxsoAMFjZw=",
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "path": f"/api{path}",
            "accountId": ACCOUNT,
            "protocol": "HTTP/1.1",
            "stage": "api",
            "domainPrefix": "abc123",
            "requestTimeEpoch": int(now * 1000),
            "requestId": str(uuid.uuid4()),
            "identity": {
                "accountId": ACCOUNT,
                "caller": "AIDAEXAMPLE",
                "userArn": f"arn:aws:iam::{ACCOUNT}:user/ops",
                "user": "AIDAEXAMPLE",
                "sourceIp": "198.51.100.7",
                "userAgent": "awscurl/0.36",
            },
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "apiId": "abc123",
        },
        "body": None if body is None else json.dumps(body),
        "isBase64Encoded": False,
    }


def s3_event(bucket: str, key: str, size: int) -> dict[str, Any]:
    """An S3 ``ObjectCreated:Put`` notification; the key form-URL-encoded, as S3 sends it."""
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": REGION,
                "eventTime": "2026-01-01T00:00:00.000Z",
                "eventName": "ObjectCreated:Put",
                "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
                "requestParameters": {"sourceIPAddress": "198.51.100.7"},
                "responseElements": {
                    "x-amz-request-id": "C3D13FE58DE4C810",
                    "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5Jg",
                },
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "drivepipe-on_upload",
                    "bucket": {
                        "name": bucket,
                        "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                        "arn": f"arn:aws:s3:::{bucket}",
                    },
                    "object": {
                        "key": urllib.parse.quote_plus(key, safe="/"),
                        "size": size,
                        "eTag": hashlib.md5(key.encode()).hexdigest(),
                        "sequencer": "0055AED6DCD90281E5",
                    },
                },
            }
        ]
    }


def scheduled_event(rule: str) -> dict[str, Any]:
    """An EventBridge ``Scheduled Event``, as a schedule rule delivers it."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT,
        "time": "2026-01-01T00:00:00Z",
        "region": REGION,
        "resources": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{rule}"],
        "detail": {},
    }


def sqs_event(queue_url: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """An SQS event source mapping's batch for messages received from ``queue_url``."""
    name = queue_url.rstrip("/").rsplit("/", 1)[-1]
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": {
                    "ApproximateReceiveCount": m["Attributes"]["ApproximateReceiveCount"],
                    "SentTimestamp": m["Attributes"]["SentTimestamp"],
                    "SenderId": "AIDAEXAMPLE",
                    "ApproximateFirstReceiveTimestamp": m["Attributes"][
                        "ApproximateFirstReceiveTimestamp"
                    ],
                },
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}",
                "awsRegion": REGION,
            }
            for m in messages
        ]
    }


def receive_all(stack: CleanStack, queue_url: str, expected: int) -> list[dict[str, Any]]:
    """Receive ``expected`` messages (hidden for the visibility timeout, as Lambda's poller)."""
    sqs = stack.moto.client("sqs")
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + 30
    while len(messages) < expected and time.monotonic() < deadline:
        got = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, AttributeNames=["All"], WaitTimeSeconds=1
        )
        messages += got.get("Messages", [])
    assert len(messages) == expected, messages
    return messages


def put_input(stack: CleanStack, key: str, body: bytes) -> int:
    """Upload to the input bucket; returns the size."""
    stack.moto.client("s3").put_object(Bucket=stack.input_bucket, Key=key, Body=body)
    return len(body)


# ---- the tests ------------------------------------------------------------------------------
def test_only_the_artifacts_are_importable(artifacts: Artifacts, clean_stack: CleanStack) -> None:
    layer_modules = ("pandas", "numpy", "pyarrow", "pydantic", "boto3", "botocore", "requests")
    run = invoke(
        artifacts,
        "api_handler",
        clean_stack,
        [],
        imports=(*layer_modules, "openpyxl", "google.auth"),
    )
    assert run.import_error is None, run.import_error
    files = run.meta["files"]
    for name in ("app", "shared", "chalice"):
        assert Path(files[name]).is_relative_to(artifacts.task), (name, files[name])
    for name in (*layer_modules, "openpyxl", "google.auth"):
        assert Path(files[name]).is_relative_to(artifacts.layer_python), (name, files[name])
    assert run.meta["outside"] == []
    assert not any("site-packages" in p for p in run.meta["sys_path"]), run.meta["sys_path"]
    # Lambda's order: /var/task, /opt/python, then the runtime's own (older) boto3/botocore.
    paths = run.meta["sys_path"]
    runtime = str(runtime_sdk(artifacts.task.parent))
    assert paths.index(str(artifacts.layer_python)) < paths.index(runtime)


def test_every_handler_runs_from_the_artifacts_alone(
    artifacts: Artifacts, clean_stack: CleanStack
) -> None:
    stack = clean_stack
    assert set(artifacts.functions) == {
        "api_handler",
        "on_upload",
        "on_schedule",
        "fanout_worker",
        "fanout_dead_letter",
        "failed_events",
        "push_worker",  # the dev stage has push on (deploy/aws-stages.json)
    }

    # HTTP: health, a sync of the shipped pipeline (CSV + XLSX from Drive), its manifest, and a
    # sync that fans out to the work queue.
    health, sync, bulk = ok_results(
        invoke(
            artifacts,
            "api_handler",
            stack,
            [
                api_event("GET", "/health", "/health"),
                api_event("POST", "/sync", "/sync", {"pipeline": "sales"}),
                api_event("POST", "/sync", "/sync", {"pipeline": "bulk"}),
            ],
        )
    )
    assert health["statusCode"] == 200, health
    assert sync["statusCode"] == 200, sync
    manifest = json.loads(sync["body"])
    assert manifest["counts"]["failed"] == 0, manifest
    assert manifest["counts"]["written"] == 4, manifest  # three CSVs and the workbook
    assert bulk["statusCode"] == 202, bulk
    bulk_run = json.loads(bulk["body"])["run_id"]

    (got_run,) = ok_results(
        invoke(
            artifacts,
            "api_handler",
            stack,
            [api_event("GET", "/runs/{run_id}", f"/runs/{manifest['run_id']}")],
        )
    )
    assert got_run["statusCode"] == 200, got_run
    assert json.loads(got_run["body"])["run_id"] == manifest["run_id"]

    # SQS: the planner's three work items, delivered to the worker as Lambda's poller would.
    messages = receive_all(stack, stack.queue_url, 3)
    (worked,) = ok_results(
        invoke(artifacts, "fanout_worker", stack, [sqs_event(stack.queue_url, messages)])
    )
    assert worked == {"batchItemFailures": []}
    (dead,) = ok_results(
        invoke(artifacts, "fanout_dead_letter", stack, [sqs_event(stack.dlq_url, messages[:1])])
    )
    assert dead == {"batchItemFailures": []}
    assert stack.keys(f"bulk/_runs/{bulk_run}/items/"), "the worker recorded no item"

    # S3: an uploaded workbook (a key S3 URL-encodes) and a request file.
    xlsx_key = "incoming/sales/west (2).xlsx"
    size = put_input(stack, xlsx_key, xlsx_bytes())
    request_key = "requests/req-1.json"
    request_size = put_input(stack, request_key, json.dumps({"pipeline": "sales"}).encode())
    uploaded, requested = ok_results(
        invoke(
            artifacts,
            "on_upload",
            stack,
            [
                s3_event(stack.input_bucket, xlsx_key, size),
                s3_event(stack.input_bucket, request_key, request_size),
            ],
        )
    )
    assert [r["outcome"] for r in uploaded] == ["transformed"], uploaded
    assert uploaded[0]["summary"]["counts"]["written"] == 1, uploaded
    assert [r["outcome"] for r in requested] == ["sync"], requested
    assert requested[0]["summary"]["counts"]["failed"] == 0, requested

    # EventBridge: the hourly rule's event syncs every scheduled pipeline; a workbook added
    # to Drive since is fetched (requests) and read (openpyxl).
    (stack.drive_root / "late.xlsx").write_bytes(xlsx_bytes())
    (scheduled,) = ok_results(
        invoke(artifacts, "on_schedule", stack, [scheduled_event("drivepipe-dev-on_schedule")])
    )
    assert [r["pipeline"] for r in scheduled] == ["sales"], scheduled
    counts = scheduled[0]["summary"]["counts"]
    assert (counts["written"], counts["failed"]) == (1, 0), scheduled
    assert any(k.endswith(".parquet") for k in stack.keys("sales/")), stack.keys("sales/")

    # SQS: a sync handed off by a Drive notification (the webhook recorded it as owed); the
    # push worker reads the changes feed and writes what changed in Drive since.
    (stack.drive_root / "pushed.csv").write_text(CSV)
    requested = {"nonce": uuid.uuid4().hex[:16], "at": 0.0, "channel": "c", "seen": {"c": 2}}
    stack.moto.client("s3").put_object(
        Bucket=stack.output_bucket,
        Key=f"sales/{push_requested_key('sales')}",
        Body=json.dumps(requested).encode(),
    )
    message = {"kind": "drivepipe.push", "pipeline": "sales", "reason": "test"}
    pushed = [
        {
            "MessageId": str(uuid.uuid4()),
            "ReceiptHandle": "r",
            "Body": json.dumps(message),
            "MD5OfBody": hashlib.md5(json.dumps(message).encode()).hexdigest(),
            "Attributes": {
                "ApproximateReceiveCount": "1",
                "SentTimestamp": "0",
                "ApproximateFirstReceiveTimestamp": "0",
            },
        }
    ]
    settled = dataclasses.replace(stack, env={**stack.env, "DRIVEPIPE_PUSH_SETTLE_SECONDS": "0"})
    (worked,) = ok_results(
        invoke(
            artifacts, "push_worker", settled, [sqs_event("http://q/drivepipe-push-dev", pushed)]
        )
    )
    assert worked == {"batchItemFailures": []}, worked
    assert any("pushed" in k for k in stack.keys("sales/")), stack.keys("sales/")


@pytest.fixture(scope="module")
def without_xlsx_engines(
    built: PackageReport, tmp_path_factory: pytest.TempPathFactory
) -> Artifacts:
    """The same function zip beside a layer built without either xlsx engine."""
    root = tmp_path_factory.mktemp("no-xlsx-engine")
    spec = LayerSpec(exclude=frozenset({"openpyxl", "python-calamine"}))
    layer = build_layer(root / "layer.zip", spec)
    assert "pandas" in layer.top_level
    assert not {"openpyxl", "python_calamine"} & set(layer.top_level)
    return _artifacts(built, layer.zip_path, root)


def _upload_workbook(artifacts: Artifacts, stack: CleanStack) -> Run:
    key = "incoming/sales/west.xlsx"
    size = put_input(stack, key, xlsx_bytes())
    return invoke(artifacts, "on_upload", stack, [s3_event(stack.input_bucket, key, size)])


def test_a_missing_dependency_fails_the_invocation_so_lambda_retries(
    without_xlsx_engines: Artifacts, clean_stack: CleanStack
) -> None:
    # The app still imports (the engines are needed only for workbooks), so nothing fails
    # until a workbook arrives; then the invocation fails, as a package defect, instead of
    # quarantining a good workbook as bad input and succeeding.
    run = _upload_workbook(without_xlsx_engines, clean_stack)
    assert run.import_error is None
    (result,) = run.results
    assert not result["ok"], result["result"]
    assert "openpyxl" in result["message"], result
    assert not clean_stack.keys("sales/west"), "a workbook was written without an engine"
    quarantined = [k for k in clean_stack.keys("sales/_quarantine/") if "west" in k]
    assert not quarantined, "a good workbook was quarantined as bad input"
    # ...and the cause, in the same clean runtime, is the missing module.
    probe = invoke(without_xlsx_engines, "on_upload", clean_stack, [], imports=("openpyxl",))
    assert probe.import_error is not None
    assert probe.import_error["error"] == "ModuleNotFoundError"
    assert probe.import_error["message"] == "No module named 'openpyxl'"
