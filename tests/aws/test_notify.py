"""Notifications on the AWS path: the Chalice app, moto_server SNS, a loopback webhook.

The app is invoked as Lambda would (chalice.test.Client: HTTP route, S3 event) with
``AWS_LAMBDA_FUNCTION_NAME`` set, so it logs JSON lines and its EMF metric line to stdout as on
Lambda. SNS is moto_server's, reached by the real boto3 client; an SQS queue subscribed to the
topic receives what an SQS subscriber (or, as text, an e-mail subscriber) would.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from chalice.test import Client

from devstack.aws_events import s3_event, s3_put_record
from devstack.webhook_receiver import WebhookReceiver
from shared.log import JsonFormatter
from tests.aws.conftest import AppLoader, Stack
from tests.core.test_metrics import check_emf

pytestmark = pytest.mark.filterwarnings("ignore:IAMAuthorizer is not a supported")
REPO_ROOT = Path(__file__).resolve().parents[2]
BAD_CSV = (REPO_ROOT / "devstack" / "samples" / "drive" / "broken" / "bad.csv").read_bytes()
CONFIG = """
[settings.notify]
sns_topic = "${TEST_SNS_TOPIC}"
webhook_url_env = "TEST_WEBHOOK_URL"

[pipelines.sales]
allow_overrides = ["full_refresh"]
output = { url = "s3://${DRIVEPIPE_OUTPUT_BUCKET}/sales" }

[pipelines.sales.source]
folder_id = "${DRIVE_FOLDER_ID}"
incoming_url = "s3://${DRIVEPIPE_INPUT_BUCKET}/incoming/sales/"

[pipelines.clean]
notify = { on = ["failed"], sns_topic = "${TEST_SNS_TOPIC}", webhook_url_env = "TEST_WEBHOOK_URL" }
source = { folder_id = "${DRIVE_FOLDER_ID}", include = ["q1.csv"] }
output = { url = "s3://${DRIVEPIPE_OUTPUT_BUCKET}/clean" }
"""


@dataclass
class Wired:
    client: Client
    hook: WebhookReceiver
    sqs: Any
    queue_url: str
    runtime_log: io.StringIO  # what the Lambda runtime's root handler wrote

    def sns_messages(self) -> list[dict[str, Any]]:
        """What the SQS subscriber of the topic received (the event JSON, unwrapped)."""
        found = []
        while True:
            got = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10)
            if not got.get("Messages"):
                return found
            for message in got["Messages"]:
                envelope = json.loads(message["Body"])  # SNS's notification envelope
                found.append({"envelope": envelope, "event": json.loads(envelope["Message"])})
                self.sqs.delete_message(
                    QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"]
                )


@pytest.fixture
def wired(
    stack: Stack, load_app: AppLoader, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Wired]:
    """The app with a malformed CSV beside q1.csv in Drive, SNS -> SQS and a webhook wired."""
    (stack.drive_root / "broken").mkdir()
    (stack.drive_root / "broken" / "bad.csv").write_bytes(BAD_CSV)
    sns, sqs = stack.moto.client("sns"), stack.moto.client("sqs")
    topic = sns.create_topic(Name=f"alerts-{tmp_path.name[-12:]}")["TopicArn"]
    queue_url = sqs.create_queue(QueueName=f"alerts-{tmp_path.name[-12:]}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn["Attributes"]["QueueArn"])
    config = tmp_path / "drivepipe.toml"
    config.write_text(CONFIG)
    # The Lambda runtime's root handler, which third-party loggers write to (at DEBUG here);
    # the app's log.configure() puts the redaction filter on it at import.
    sink = io.StringIO()
    root, runtime = logging.getLogger(), logging.StreamHandler(sink)
    level = root.level
    runtime.setFormatter(logging.Formatter("[%(levelname)s] %(name)s %(message)s"))
    root.addHandler(runtime)
    root.setLevel(logging.DEBUG)
    request.addfinalizer(lambda: (root.removeHandler(runtime), root.setLevel(level)))
    with WebhookReceiver([500, 500]) as hook:
        app = load_app(
            DRIVEPIPE_CONFIG=str(config),
            TEST_SNS_TOPIC=topic,
            TEST_WEBHOOK_URL=hook.url,
            AWS_LAMBDA_FUNCTION_NAME="drivepipe-test",
            DRIVEPIPE_LOG_LEVEL="DEBUG",
            DRIVEPIPE_LOG_THIRD_PARTY="debug",
            DRIVEPIPE_NOTIFY_BACKOFF_SECONDS="0",
        )
        yield Wired(Client(app.app, project_dir=str(tmp_path)), hook, sqs, queue_url, sink)


def test_a_malformed_file_notifies_sns_and_the_webhook_and_the_run_succeeds(
    wired: Wired, capfd: pytest.CaptureFixture[str]
) -> None:
    response = wired.client.http.post(
        "/sync", headers={"Content-Type": "application/json"}, body='{"pipeline": "sales"}'
    )
    assert response.status_code == 200, response.body
    summary = json.loads(response.body)
    run_id = summary["run_id"]
    assert summary["counts"]["failed"] == 1 and summary["counts"]["written"] == 1

    [sent] = wired.sns_messages()
    event = sent["event"]
    assert sent["envelope"]["Subject"].startswith("drivepipe sales: 1 input failed")
    assert event["run_id"] == run_id and event["pipeline"] == "sales" and event["trigger"] == "http"
    [failed] = event["failed"]
    assert failed["path"] == "broken/bad.csv" and failed["reason"]
    assert failed["quarantine_url"].startswith("s3://") and event["manifest"].endswith(
        f"_runs/{run_id}.json"
    )

    # the webhook answered 500 twice, then took exactly one message
    assert [r.status for r in wired.hook.received] == [500, 500, 200]
    [slack] = wired.hook.accepted
    assert "broken/bad.csv" in json.dumps(slack) and run_id in slack["text"]

    shown = json.loads(wired.client.http.get(f"/runs/{run_id}").body)
    outcomes = {n["target"]: n for n in shown["notifications"]}
    assert outcomes["sns"]["ok"] and outcomes["webhook"]["attempts"] == 3

    listed = json.loads(wired.client.http.get("/runs?status=failed&pipeline=sales").body)
    assert [r["run_id"] for r in listed["runs"]] == [run_id]

    out, err = capfd.readouterr()
    logs = out + err + wired.runtime_log.getvalue()
    assert "[DEBUG] botocore" in logs and "[DEBUG] urllib3" in logs  # third-party DEBUG lines
    assert wired.hook.token not in logs
    [emf] = [line for line in out.splitlines() if line.startswith('{"_aws"')]
    metrics = check_emf(emf)
    assert metrics["InputsFailed"] == 1 and metrics["DriveRequests"] >= 2


def test_a_clean_run_with_on_failed_notifies_nothing(wired: Wired) -> None:
    response = wired.client.http.post(
        "/sync", headers={"Content-Type": "application/json"}, body='{"pipeline": "clean"}'
    )
    assert response.status_code == 200
    assert json.loads(response.body)["counts"]["written"] == 1
    assert wired.sns_messages() == [] and wired.hook.received == []


def test_an_upload_returns_logs_and_notifies_its_run_id(wired: Wired, stack: Stack) -> None:
    sink = io.StringIO()
    handler = logging.StreamHandler(sink)
    handler.setFormatter(JsonFormatter())
    logging.getLogger("drivepipe").addHandler(handler)
    key = "incoming/sales/upload_bad.csv"
    s3 = stack.s3()
    s3.put_object(Bucket=stack.input_bucket, Key=key, Body=BAD_CSV)
    head = s3.head_object(Bucket=stack.input_bucket, Key=key)
    record = s3_put_record(stack.input_bucket, key, size=head["ContentLength"], etag=head["ETag"])
    [outcome] = wired.client.lambda_.invoke("on_upload", s3_event([record])).payload
    run_id = outcome["run_id"]
    assert outcome["outcome"] == "transformed" and run_id == outcome["summary"]["run_id"]
    [sent] = wired.sns_messages()
    assert sent["event"]["run_id"] == run_id and sent["event"]["trigger"] == "s3"
    logging.getLogger("drivepipe").removeHandler(handler)
    logged = [json.loads(line) for line in sink.getvalue().splitlines() if '"s3 record"' in line]
    assert logged and logged[0]["run_id"] == run_id
