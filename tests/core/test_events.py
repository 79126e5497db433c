"""Event parsing: S3 notifications and GCS/Pub/Sub CloudEvents become drivepipe's own types."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote_plus

import pytest

from shared.errors import EventError
from shared.storage.base import key_problem
from shared.triggers.events import (
    from_gcs_cloudevent,
    from_s3_event,
    pipelines_from_pubsub,
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
