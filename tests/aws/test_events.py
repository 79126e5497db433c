"""on_upload and on_schedule with events exactly as S3 and EventBridge deliver them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from chalice.test import Client

from devstack.aws_events import s3_event, s3_put_record, scheduled_event
from shared.errors import RetryableError
from tests.aws.conftest import SALES_CSV, AppLoader, Stack

pytestmark = pytest.mark.filterwarnings("ignore:IAMAuthorizer is not a supported")

AWKWARD_KEYS = {
    "incoming/sales/my file (2).csv": "incoming/sales/my+file+%282%29.csv",
    "incoming/sales/a+b.csv": "incoming/sales/a%2Bb.csv",
    "incoming/sales/café ünï.csv": "incoming/sales/caf%C3%A9+%C3%BCn%C3%AF.csv",
}


def upload(stack: Stack, key: str, body: str = SALES_CSV) -> dict[str, Any]:
    """Put ``key`` into the input bucket and return its S3 event record."""
    s3 = stack.s3()
    s3.put_object(Bucket=stack.input_bucket, Key=key, Body=body.encode())
    head = s3.head_object(Bucket=stack.input_bucket, Key=key)
    return s3_put_record(stack.input_bucket, key, size=head["ContentLength"], etag=head["ETag"])


def invoke(client: Client, name: str, event: dict[str, Any]) -> Any:
    return client.lambda_.invoke(name, event).payload


@pytest.mark.parametrize(("key", "encoded"), sorted(AWKWARD_KEYS.items()))
def test_keys_are_encoded_as_s3_encodes_them(key: str, encoded: str) -> None:
    record = s3_put_record("bucket", key, size=1, etag='"abc"')
    assert record["s3"]["object"]["key"] == encoded
    assert record["s3"]["object"]["eTag"] == "abc"  # S3 sends the ETag without quotes


def test_event_shape_matches_s3_notifications() -> None:
    record = s3_put_record("bucket", "k.csv", size=3, etag="e", region="eu-west-1")
    assert record["eventVersion"] == "2.1"
    assert record["eventSource"] == "aws:s3"
    assert record["eventName"] == "ObjectCreated:Put"
    assert record["awsRegion"] == "eu-west-1"
    assert record["s3"]["bucket"] == {
        "name": "bucket",
        "ownerIdentity": record["s3"]["bucket"]["ownerIdentity"],
        "arn": "arn:aws:s3:::bucket",
    }
    assert record["eventTime"].endswith("Z") and "T" in record["eventTime"]
    later = s3_put_record("bucket", "k.csv", size=3, etag="e")
    assert int(later["s3"]["object"]["sequencer"], 16) > int(
        record["s3"]["object"]["sequencer"], 16
    )


def test_every_record_with_an_awkward_key_is_transformed(client: Client, stack: Stack) -> None:
    records = [upload(stack, key) for key in AWKWARD_KEYS]
    outcomes = invoke(client, "on_upload", s3_event(records))
    assert [o["outcome"] for o in outcomes] == ["transformed"] * len(AWKWARD_KEYS), outcomes
    assert [o["url"] for o in outcomes] == [
        f"s3://{stack.input_bucket}/{key}" for key in AWKWARD_KEYS
    ]
    assert len(stack.data_outputs()) == len(AWKWARD_KEYS)


def test_a_bad_record_does_not_stop_the_others(client: Client, stack: Stack) -> None:
    good = upload(stack, "incoming/sales/good.csv")
    missing = s3_put_record(
        stack.input_bucket, "incoming/sales/never uploaded.csv", size=1, etag="x"
    )
    not_s3 = {"eventSource": "aws:sqs", "body": "{}"}
    also_good = upload(stack, "incoming/sales/also good.csv")
    outcomes = invoke(client, "on_upload", s3_event([good, not_s3, missing, also_good]))
    assert [o["outcome"] for o in outcomes][:2] == ["transformed", "error"], outcomes
    assert "eventSource" in outcomes[1]["reason"]
    # an object gone before the event arrived: recorded as a failed input, not raised
    assert outcomes[2]["summary"]["counts"]["failed"] == 1, outcomes[2]
    assert outcomes[2]["summary"]["counts"]["written"] == 0
    assert outcomes[3]["outcome"] == "transformed"
    assert sorted(stack.data_outputs()) == [
        "sales/sales/also good.parquet",
        "sales/sales/good.parquet",
    ]


@pytest.mark.parametrize(
    "key",
    ["elsewhere/q1.csv", "incoming/sales/_runs/x.json", "incoming/other/q1.csv"],
)
def test_keys_outside_any_pipeline_are_ignored(client: Client, stack: Stack, key: str) -> None:
    outcomes = invoke(client, "on_upload", s3_event([upload(stack, key)]))
    assert [o["outcome"] for o in outcomes] == ["ignored"], outcomes
    assert stack.output_keys() == []


def test_a_redelivered_event_is_a_duplicate(client: Client, stack: Stack) -> None:
    event = s3_event([upload(stack, "incoming/sales/q2.csv")])
    first = invoke(client, "on_upload", event)
    again = invoke(client, "on_upload", event)
    assert [o["outcome"] for o in first] == ["transformed"]
    assert [o["outcome"] for o in again] == ["duplicate"]


def test_deletions_are_not_processed(client: Client, stack: Stack) -> None:
    record = s3_put_record(
        stack.input_bucket,
        "incoming/sales/gone.csv",
        size=0,
        etag="x",
        event_name="ObjectRemoved:Delete",
    )
    assert invoke(client, "on_upload", s3_event([record])) == []


def test_a_request_file_starts_a_drive_sync(client: Client, stack: Stack) -> None:
    record = upload(stack, "requests/run 1.json", '{"pipeline": "sales"}')
    outcomes = invoke(client, "on_upload", s3_event([record]))
    assert [o["outcome"] for o in outcomes] == ["sync"], outcomes
    assert stack.data_outputs() == ["sales/sales/q1.parquet"]


def test_a_scheduled_event_syncs_scheduled_pipelines(client: Client, stack: Stack) -> None:
    results = invoke(client, "on_schedule", scheduled_event())
    assert [r["pipeline"] for r in results] == ["sales"]
    assert "error" not in results[0], results
    assert stack.data_outputs() == ["sales/sales/q1.parquet"]


def test_a_schedule_naming_an_unknown_pipeline_reports_it(client: Client, stack: Stack) -> None:
    event = {**scheduled_event(), "detail": {"pipelines": ["nope"]}}
    results = invoke(client, "on_schedule", event)
    assert results == [{"pipeline": "nope", "error": "unknown pipeline"}]
    assert stack.output_keys() == []


def test_the_scheduled_event_has_eventbridge_shape() -> None:
    event = scheduled_event("rule-x", region="eu-west-1", account="111122223333")
    assert event["detail-type"] == "Scheduled Event"
    assert event["source"] == "aws.events"
    assert event["resources"] == ["arn:aws:events:eu-west-1:111122223333:rule/rule-x"]
    assert event["detail"] == {} and event["version"] == "0"
    assert set(event) == {
        "version",
        "id",
        "detail-type",
        "source",
        "account",
        "time",
        "region",
        "resources",
        "detail",
    }


def test_a_transient_failure_is_raised_after_the_other_records(
    client: Client, stack: Stack, app_module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lambda then retries the whole event; records already done come back as duplicates."""
    real_on_object = app_module.service.on_object

    def flaky(event: Any, *, trigger: str) -> dict[str, Any]:
        if event.key.endswith("flaky.csv"):
            raise RetryableError("destination unreachable")
        return real_on_object(event, trigger=trigger)

    monkeypatch.setattr(app_module.service, "on_object", flaky)
    event = s3_event(
        [upload(stack, "incoming/sales/flaky.csv"), upload(stack, "incoming/sales/ok.csv")]
    )
    with pytest.raises(RetryableError, match="destination unreachable"):
        invoke(client, "on_upload", event)
    assert stack.data_outputs() == ["sales/sales/ok.parquet"]

    monkeypatch.setattr(app_module.service, "on_object", real_on_object)
    outcomes = invoke(client, "on_upload", event)
    assert [o["outcome"] for o in outcomes] == ["transformed", "duplicate"]


def test_each_record_logs_one_json_line_in_lambda(
    stack: Stack, load_app: AppLoader, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    module = load_app(AWS_LAMBDA_FUNCTION_NAME="drivepipe-dev-on_upload")
    client = Client(module.app, project_dir=str(tmp_path))
    event = s3_event([upload(stack, "elsewhere/a.csv"), {"eventSource": "aws:sqs"}])
    capsys.readouterr()
    invoke(client, "on_upload", event)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    records = [line for line in lines if line.get("message") == "s3 record"]
    assert [(r["record"], r["outcome"]) for r in records] == [(0, "ignored"), (1, "error")]
    assert records[0]["url"] == f"s3://{stack.input_bucket}/elsewhere/a.csv"
    assert records[1]["severity"] == "WARNING"
