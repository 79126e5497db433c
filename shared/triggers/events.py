"""Turn each cloud's storage, schedule and queue events into drivepipe's own small types.

Raw event dicts never travel past :mod:`shared.triggers`: S3 notifications and GCS CloudEvents
both become :class:`ObjectEvent`, schedule messages (EventBridge detail, Pub/Sub) a list of
pipeline names, and Pub/Sub envelopes (scheduler, work items, dead letters) a
:class:`PubSubMessage`. SQS records need only :func:`sqs_attempt` and :func:`queue_name`.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from shared.errors import EventError

GCS_FINALIZED = "google.cloud.storage.object.v1.finalized"
PUBSUB_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"


@dataclass(frozen=True)
class ObjectEvent:
    """One object that was created or overwritten in a bucket."""

    scheme: str  # "s3" or "gs"
    bucket: str
    key: str  # decoded object key / name
    version: str  # what makes this write unique: S3 versionId/sequencer/eTag, GCS generation
    size: int | None = None

    @property
    def url(self) -> str:
        """The object's URL, e.g. ``s3://bucket/incoming/a.csv``."""
        return f"{self.scheme}://{self.bucket}/{self.key}"

    @property
    def dedupe_id(self) -> str:
        """Identity of this delivery for at-least-once deduplication."""
        return f"{self.url}#{self.version}"


def _require(mapping: Mapping[str, Any], field: str, where: str) -> Any:
    if not isinstance(mapping, Mapping) or field not in mapping:
        raise EventError(f"{where}: missing field '{field}'")
    return mapping[field]


def from_s3_event(event: Mapping[str, Any]) -> list[ObjectEvent]:
    """Every ``ObjectCreated`` record of an S3 notification, keys ``unquote_plus``-decoded.

    S3 form-URL-encodes keys (a space arrives as ``+``, a plus as ``%2B``), so plain
    ``unquote`` would leave ``+`` in place and the object would not be found.
    """
    records = _require(event, "Records", "S3 event")
    if not isinstance(records, list):
        raise EventError("S3 event: 'Records' must be a list")
    out: list[ObjectEvent] = []
    for index, record in enumerate(records):
        where = f"S3 event Records[{index}]"
        source = record.get("eventSource") if isinstance(record, Mapping) else None
        if source != "aws:s3":
            raise EventError(f"{where}: eventSource is {source!r}, expected 'aws:s3'")
        if not str(record.get("eventName", "")).startswith("ObjectCreated:"):
            continue  # deletions and restores carry no new data
        s3 = _require(record, "s3", where)
        bucket = _require(_require(s3, "bucket", where), "name", where)
        obj = _require(s3, "object", where)
        raw_key = _require(obj, "key", where)
        if not isinstance(raw_key, str) or not isinstance(bucket, str):
            raise EventError(f"{where}: bucket name and object key must be strings")
        version = obj.get("versionId") or obj.get("sequencer") or obj.get("eTag") or ""
        size = obj.get("size")
        out.append(
            ObjectEvent(
                scheme="s3",
                bucket=bucket,
                key=unquote_plus(raw_key),
                version=str(version),
                size=int(size) if isinstance(size, int | str) and str(size).isdigit() else None,
            )
        )
    return out


def from_gcs_cloudevent(attributes: Mapping[str, Any], data: Mapping[str, Any]) -> ObjectEvent:
    """A ``google.cloud.storage.object.v1.finalized`` CloudEvent as an :class:`ObjectEvent`.

    GCS object names in the event data are not URL-encoded; ``generation`` and ``size``
    are strings.
    """
    event_type = attributes.get("type")
    if event_type != GCS_FINALIZED:
        raise EventError(f"CloudEvent type is {event_type!r}, expected '{GCS_FINALIZED}'")
    bucket = _require(data, "bucket", "GCS event data")
    name = _require(data, "name", "GCS event data")
    if not isinstance(bucket, str) or not isinstance(name, str):
        raise EventError("GCS event data: 'bucket' and 'name' must be strings")
    generation = data.get("generation") or attributes.get("id") or ""
    size = data.get("size")
    return ObjectEvent(
        scheme="gs",
        bucket=bucket,
        key=name,
        version=str(generation),
        size=int(size) if isinstance(size, str | int) and str(size).isdigit() else None,
    )


@dataclass(frozen=True)
class PubSubMessage:
    """A Pub/Sub push envelope, decoded: the message bytes, its attributes and delivery number."""

    body: bytes
    attributes: dict[str, str]
    attempt: int | None = None  # set when the subscription has a dead-letter policy


def pubsub_message(data: Mapping[str, Any]) -> PubSubMessage:
    """The message of a ``messagePublished`` CloudEvent's data; an absent ``data`` is empty."""
    message = _require(data, "message", "Pub/Sub event data")
    if not isinstance(message, Mapping):
        raise EventError("Pub/Sub event data: 'message' must be an object")
    encoded = message.get("data") or ""
    try:
        body = base64.b64decode(encoded, validate=True)
    except (binascii.Error, TypeError, ValueError) as exc:
        raise EventError("Pub/Sub message data is not base64") from exc
    attributes = message.get("attributes")
    attempt = str(data.get("deliveryAttempt") or message.get("deliveryAttempt") or "")
    return PubSubMessage(
        body=body,
        attributes=dict(attributes) if isinstance(attributes, Mapping) else {},
        attempt=int(attempt) if attempt.isdigit() else None,
    )


def pipelines_from_pubsub(
    attributes: Mapping[str, Any], data: Mapping[str, Any]
) -> list[str] | None:
    """Pipeline names from a Cloud Scheduler Pub/Sub CloudEvent; ``None`` means "all scheduled".

    The message body may be empty, a JSON object ``{"pipelines": [...]}``, a JSON list of
    names, or a comma-separated list of names.
    """
    event_type = attributes.get("type")
    if event_type != PUBSUB_PUBLISHED:
        raise EventError(f"CloudEvent type is {event_type!r}, expected '{PUBSUB_PUBLISHED}'")
    try:
        text = pubsub_message(data).body.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise EventError("Pub/Sub message data is not base64-encoded UTF-8") from exc
    return parse_pipeline_list(text)


def pipelines_from_detail(detail: Any) -> list[str] | None:
    """Pipeline names from an EventBridge schedule's ``detail``; ``None`` means "all scheduled"."""
    if not isinstance(detail, Mapping) or not detail:
        return None
    return _pipeline_names(detail.get("pipelines"))


def parse_pipeline_list(text: str) -> list[str] | None:
    """Names from ``{"pipelines": [...]}``, ``[...]``, or ``a,b``; empty means ``None``."""
    if not text:
        return None
    if text[0] in "[{":
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise EventError(f"schedule message is not valid JSON: {exc.msg}") from exc
        return _pipeline_names(parsed.get("pipelines") if isinstance(parsed, dict) else parsed)
    return [n.strip() for n in text.split(",") if n.strip()] or None


def _pipeline_names(parsed: Any) -> list[str] | None:
    if parsed is None:
        return None
    if not isinstance(parsed, list) or not all(isinstance(n, str) for n in parsed):
        raise EventError("schedule message: 'pipelines' must be a list of names")
    return [n for n in parsed if n] or None


def cloudevent_data(data: Any) -> Mapping[str, Any]:
    """A CloudEvent's data as a mapping (functions-framework may hand over bytes or text)."""
    if isinstance(data, bytes | str):
        try:
            data = json.loads(data)
        except ValueError:
            raise EventError("CloudEvent data is not a JSON object") from None
    if not isinstance(data, Mapping):
        raise EventError("CloudEvent data is not a JSON object")
    return data


def cloudevent_context(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """The CloudEvent's ids, as log fields: every line about one delivery carries them."""
    return {
        "event_id": attributes.get("id"),
        "event_type": attributes.get("type"),
        "event_source": attributes.get("source"),
        "event_subject": attributes.get("subject"),
    }


def queue_name(value: str) -> str:
    """The queue name from a name or a queue URL (``https://sqs.../123/NAME``)."""
    return value.strip().rstrip("/").rsplit("/", 1)[-1]


def sqs_attempt(record: Mapping[str, Any]) -> int:
    """The delivery number of an SQS record (``attributes.ApproximateReceiveCount``)."""
    raw = (record.get("attributes") or {}).get("ApproximateReceiveCount") or "1"
    return int(raw) if str(raw).isdigit() else 1
