"""Event parsing: S3 notifications and GCS/Pub/Sub CloudEvents become drivepipe's own types."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote_plus

import pytest

from shared.errors import EventError
from shared.storage.base import key_problem
from shared.triggers.events import (
    cloudevent_data,
    from_gcs_cloudevent,
    from_s3_event,
    pipelines_from_detail,
    pipelines_from_pubsub,
    pubsub_message,
    queue_name,
    sqs_attempt,
)


def s3_record(key: str, *, name: str = "ObjectCreated:Put", bucket: str = "in-bucket") -> dict:
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2026-11-22T00:00:00.000Z",
        "eventName": name,
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "c",
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": {
                "key": quote_plus(key, safe="/"),
                "size": 12,
                "eTag": "abc",
                "sequencer": "0055AED6DCD90281E5",
            },
        },
    }


@pytest.mark.parametrize(
    "key",
    [
        "incoming/my file.csv",
        "incoming/a+b.csv",
        "incoming/ventes_été (2).csv",
        "incoming/日本.csv",
    ],
)
def test_s3_keys_are_decoded_the_way_s3_encodes_them(key: str) -> None:
    [event] = from_s3_event({"Records": [s3_record(key)]})
    assert event.key == key
    assert event.url == f"s3://in-bucket/{key}"
    assert event.version == "0055AED6DCD90281E5"
    assert event.size == 12


def test_every_record_is_returned_and_deletes_are_skipped() -> None:
    records = [
        s3_record("a.csv"),
        s3_record("b.csv", name="ObjectRemoved:Delete"),
        s3_record("c.csv"),
    ]
    assert [e.key for e in from_s3_event({"Records": records})] == ["a.csv", "c.csv"]


@pytest.mark.parametrize(
    "event",
    [
        {},
        {"Records": "x"},
        {"Records": [{"eventSource": "aws:sqs"}]},
        {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put"}]},
    ],
)
def test_malformed_s3_events_raise_event_error(event: dict) -> None:
    with pytest.raises(EventError):
        from_s3_event(event)


def test_gcs_finalize_event() -> None:
    attrs = {
        "type": "google.cloud.storage.object.v1.finalized",
        "id": "1",
        "source": "//storage.googleapis.com/projects/_/buckets/b",
        "subject": "objects/x y.csv",
    }
    data = {
        "bucket": "b",
        "name": "incoming/x y.csv",
        "generation": "1700000000000001",
        "size": "42",
    }
    event = from_gcs_cloudevent(attrs, data)
    assert (event.scheme, event.bucket, event.key, event.version, event.size) == (
        "gs",
        "b",
        "incoming/x y.csv",
        "1700000000000001",
        42,
    )
    assert event.dedupe_id == "gs://b/incoming/x y.csv#1700000000000001"


def test_gcs_wrong_type_or_missing_fields() -> None:
    with pytest.raises(EventError, match="expected"):
        from_gcs_cloudevent(
            {"type": "google.cloud.storage.object.v1.deleted"}, {"bucket": "b", "name": "n"}
        )
    with pytest.raises(EventError, match="'name'"):
        from_gcs_cloudevent({"type": "google.cloud.storage.object.v1.finalized"}, {"bucket": "b"})


def pubsub(body: str | None) -> tuple[dict, dict]:
    message = {"messageId": "1", "publishTime": "2026-11-22T00:00:00Z"}
    if body is not None:
        message["data"] = base64.b64encode(body.encode()).decode()
    return (
        {"type": "google.cloud.pubsub.topic.v1.messagePublished"},
        {"message": message, "subscription": "projects/p/subscriptions/s"},
    )


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (None, None),
        ("", None),
        (json.dumps({"pipelines": ["a", "b"]}), ["a", "b"]),
        (json.dumps(["x"]), ["x"]),
        ("a, b", ["a", "b"]),
        (json.dumps({}), None),
    ],
)
def test_pubsub_pipeline_names(body: str | None, expected: list[str] | None) -> None:
    assert pipelines_from_pubsub(*pubsub(body)) == expected


def test_pubsub_bad_payloads() -> None:
    attrs, data = pubsub("x")
    data["message"]["data"] = "%%%not base64"
    with pytest.raises(EventError, match="base64"):
        pipelines_from_pubsub(attrs, data)
    with pytest.raises(EventError, match="list of names"):
        pipelines_from_pubsub(*pubsub(json.dumps({"pipelines": [1]})))


def test_one_pubsub_decoder_for_scheduler_work_and_dead_letter_messages() -> None:
    _, data = pubsub('{"v": 1}')
    data["message"]["attributes"] = {"CloudPubSubDeadLetterSourceDeliveryCount": "5"}
    data["deliveryAttempt"] = 3
    message = pubsub_message(data)
    assert message.body == b'{"v": 1}'
    assert message.attributes == {"CloudPubSubDeadLetterSourceDeliveryCount": "5"}
    assert message.attempt == 3
    assert pubsub_message(pubsub(None)[1]).body == b""  # no data: an empty message
    with pytest.raises(EventError, match="'message'"):
        pubsub_message({"subscription": "s"})
    with pytest.raises(EventError, match="must be an object"):
        pubsub_message({"message": "text"})
    with pytest.raises(EventError, match="base64"):
        pubsub_message({"message": {"data": 5}})


@pytest.mark.parametrize(
    ("detail", "expected"),
    [({}, None), (None, None), ({"pipelines": ["a", ""]}, ["a"]), ({"pipelines": []}, None)],
)
def test_eventbridge_detail_is_read_as_a_dict(detail: object, expected: list[str] | None) -> None:
    assert pipelines_from_detail(detail) == expected


def test_eventbridge_detail_must_name_a_list() -> None:
    with pytest.raises(EventError, match="list of names"):
        pipelines_from_detail({"pipelines": "sales"})


def test_cloudevent_data_is_a_json_object() -> None:
    assert cloudevent_data(b'{"a": 1}') == {"a": 1}
    assert cloudevent_data({"a": 1}) == {"a": 1}
    for bad in (b"[1]", "not json", None):
        with pytest.raises(EventError, match="not a JSON object"):
            cloudevent_data(bad)


def test_sqs_queue_names_and_attempts() -> None:
    assert queue_name("https://sqs.eu-west-1.amazonaws.com/123/work/") == "work"
    assert queue_name(" work ") == "work"
    assert sqs_attempt({"attributes": {"ApproximateReceiveCount": "4"}}) == 4
    assert sqs_attempt({"attributes": {"ApproximateReceiveCount": "x"}}) == 1
    assert sqs_attempt({}) == 1


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("incoming/ok file.csv", None),
        ("", "empty"),
        ("a/\x00b", "NUL"),
        ("/etc/passwd", "absolute"),
        ("a/../b", "'..'"),
        ("a\\b", "backslash"),
        ("k" * 1025, "longer than"),
    ],
)
def test_key_problems(key: str, problem: str | None) -> None:
    found = key_problem(key)
    assert (found is None) if problem is None else (problem in (found or ""))
