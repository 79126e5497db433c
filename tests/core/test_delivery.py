"""The one redelivery policy, and the AWS and GCP flows that follow it, on plain dicts.

The service calls are replaced, so these need no servers: they check what is raised, what is
acknowledged and what is logged.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import pytest

from shared.errors import ConfigError, EventError, ItemCrashed, RetryableError, StorageError
from shared.triggers import aws, gcp, service
from shared.triggers.delivery import (
    REPORTED_ERROR,
    Failure,
    attempt,
    log_failure,
    queue_item_transient,
)


def boom(exc: Exception) -> Any:
    def work(*args: Any, **kwargs: Any) -> Any:
        raise exc

    return work


def test_attempt_settles_drivepipe_errors_by_is_transient() -> None:
    assert attempt(lambda: 7) == 7
    storage = attempt(boom(StorageError("down")))
    assert isinstance(storage, Failure) and storage.transient
    transient = attempt(boom(RetryableError("later")))
    permanent = attempt(boom(ConfigError("broken")))
    assert isinstance(transient, Failure) and transient.transient
    assert isinstance(permanent, Failure) and not permanent.transient
    permanent.raise_if_transient()  # acknowledged: nothing raised
    with pytest.raises(RetryableError, match="later"):
        transient.raise_if_transient()


def test_a_crash_propagates_unless_caught_all() -> None:
    with pytest.raises(KeyError):
        attempt(boom(KeyError("bug")))
    caught = attempt(boom(KeyError("bug")), catch_all=True)
    assert isinstance(caught, Failure) and not caught.transient


def test_queued_work_is_redelivered_unless_its_envelope_is_malformed() -> None:
    assert queue_item_transient(KeyError("bug")) and queue_item_transient(ConfigError("x"))
    assert not queue_item_transient(EventError("not a Pub/Sub message"))


def test_permanent_failures_are_logged_for_error_reporting(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = logging.getLogger("test-delivery")  # not under "drivepipe", which does not propagate
    with caplog.at_level(logging.INFO, logger=log.name):
        log_failure(log, "on_upload", Failure(EventError("bad"), False), {"event_id": "e1"})
        log_failure(log, "on_upload", Failure(RetryableError("later"), True), {"event_id": "e2"})
    dropped, retried = caplog.records
    assert dropped.levelname == "ERROR"
    assert dropped.getMessage() == "on_upload dropped a delivery: bad"
    assert getattr(dropped, "@type") == REPORTED_ERROR
    assert dropped.__dict__["event_id"] == "e1"
    assert retried.levelname == "ERROR" and "redelivery wanted" in retried.getMessage()
    assert retried.exc_info is not None and not hasattr(retried, "@type")


def s3_record(key: str) -> dict[str, Any]:
    return {
        "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": "in"}, "object": {"key": key, "eTag": "e"}},
    }


def test_s3_records_are_settled_one_by_one_and_a_retry_raised_last(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[str] = []

    def on_object(event: Any, *, trigger: str) -> dict[str, Any]:
        seen.append(event.key)
        if event.key == "later.csv":
            raise RetryableError("destination unreachable")
        if event.key == "bug.csv":
            raise KeyError("bug")
        return {"outcome": "transformed"}

    monkeypatch.setattr(service, "on_object", on_object)
    records = [s3_record("later.csv"), {"eventSource": "aws:sqs"}, s3_record("bug.csv")]
    with pytest.raises(RetryableError, match="unreachable"):
        aws.s3_notification({"Records": [*records, s3_record("ok.csv")]})
    assert seen == ["later.csv", "bug.csv", "ok.csv"]  # every record had its turn

    # An unexpected exception (a bug, a missing module) is not the input's fault: it is
    # redelivered too, after the other records; only a record known to be bad is acknowledged.
    seen.clear()
    with pytest.raises(KeyError, match="bug"):
        aws.s3_notification({"Records": [*records[1:], s3_record("ok.csv")]})
    assert seen == ["bug.csv", "ok.csv"]
    outcomes = aws.s3_notification({"Records": records[1:2]})
    assert [(o["record"], o["outcome"]) for o in outcomes] == [(0, "error")]


def sqs_record(message_id: str, body: str) -> dict[str, Any]:
    return {"messageId": message_id, "body": body, "attributes": {"ApproximateReceiveCount": "2"}}


def test_sqs_batches_name_only_the_failed_items(monkeypatch: pytest.MonkeyPatch) -> None:
    attempts: list[int] = []

    def on_work_item(body: str, *, attempt: int) -> dict[str, Any]:
        attempts.append(attempt)
        if body == "crash":
            raise ItemCrashed("item crashed")
        return {"outcome": "done"}

    monkeypatch.setattr(service, "on_work_item", on_work_item)
    monkeypatch.setattr(service, "on_dead_letter", boom(StorageError("down")))
    event = {"Records": [sqs_record("m1", "ok"), sqs_record("m2", "crash")]}
    assert aws.sqs_work(event) == {"batchItemFailures": [{"itemIdentifier": "m2"}]}
    assert attempts == [2, 2]
    assert aws.sqs_dead_letters(event)["batchItemFailures"] == [
        {"itemIdentifier": "m1"},
        {"itemIdentifier": "m2"},
    ]


def test_a_schedule_detail_that_names_no_list_is_acknowledged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(service, "on_schedule", lambda names, *, trigger: [{"names": names}])
    assert aws.scheduled({"pipelines": ["a"]}) == [{"names": ["a"]}]
    assert aws.scheduled({}) == [{"names": None}]
    (rejected,) = aws.scheduled({"pipelines": "a"})
    assert rejected["outcome"] == "error" and "list of names" in rejected["reason"]


PUBLISHED = {"id": "ev-1", "type": "google.cloud.pubsub.topic.v1.messagePublished"}


def pubsub_data(body: bytes, **message: Any) -> dict[str, Any]:
    return {"message": {"data": base64.b64encode(body).decode(), **message}}


def test_gcp_work_items_are_redelivered_on_any_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service, "on_work_item", boom(KeyError("bug")))
    with pytest.raises(KeyError):
        gcp.on_work_message(PUBLISHED, pubsub_data(b"{}"))
    gcp.on_work_message(PUBLISHED, {"message": "not an object"})  # acknowledged


def test_gcp_dead_letters_pass_the_delivery_count(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, int | None]] = []

    def on_dead_letter(body: bytes, *, deliveries: int | None) -> dict[str, Any]:
        calls.append((body, deliveries))
        return {"outcome": "failed"}

    monkeypatch.setattr(service, "on_dead_letter", on_dead_letter)
    count = {"CloudPubSubDeadLetterSourceDeliveryCount": "5"}
    gcp.on_dead_letter_message(PUBLISHED, pubsub_data(b"item", attributes=count))
    gcp.on_dead_letter_message(PUBLISHED, json.dumps(pubsub_data(b"again")).encode())
    assert calls == [(b"item", 5), (b"again", None)]


def test_gcp_storage_events_drop_permanent_and_raise_transient_failures(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    finalized = {"id": "ev-2", "type": "google.cloud.storage.object.v1.finalized"}
    monkeypatch.setattr(service, "on_object", boom(RetryableError("later")))
    with pytest.raises(RetryableError):
        gcp.on_finalized(finalized, {"bucket": "b", "name": "incoming/a.csv"})
    gcp.on_finalized(finalized, {"bucket": "b"})  # no name: dropped, acknowledged
    monkeypatch.setattr(service, "on_object", boom(KeyError("bug")))
    with pytest.raises(KeyError):  # a crash fails the delivery as it is
        gcp.on_finalized(finalized, {"bucket": "b", "name": "incoming/a.csv"})
