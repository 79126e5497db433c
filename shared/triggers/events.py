"""Turn each cloud's storage and schedule events into drivepipe's own small types.

Raw event dicts never travel past a handler: S3 notifications and GCS CloudEvents both
become :class:`ObjectEvent`, and Pub/Sub scheduler messages become a list of pipeline names.
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


def pipelines_from_pubsub(
    attributes: Mapping[str, Any], data: Mapping[str, Any]
) -> list[str] | None:
    """Pipeline names from a Cloud Scheduler Pub/Sub CloudEvent; ``None`` means "all scheduled".

    The message body (base64) may be empty, a JSON object ``{"pipelines": [...]}``, a JSON
    list of names, or a comma-separated list of names.
    """
    event_type = attributes.get("type")
    if event_type != PUBSUB_PUBLISHED:
        raise EventError(f"CloudEvent type is {event_type!r}, expected '{PUBSUB_PUBLISHED}'")
    message = _require(data, "message", "Pub/Sub event data")
    encoded = message.get("data") if isinstance(message, Mapping) else None
    if not encoded:
        return None
    try:
        text = base64.b64decode(encoded, validate=True).decode("utf-8").strip()
    except (binascii.Error, UnicodeDecodeError, TypeError) as exc:
        raise EventError("Pub/Sub message data is not base64-encoded UTF-8") from exc
    return parse_pipeline_list(text)


def parse_pipeline_list(text: str) -> list[str] | None:
    """Names from ``{"pipelines": [...]}``, ``[...]``, or ``a,b``; empty means ``None``."""
    if not text:
        return None
    if text[0] in "[{":
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise EventError(f"schedule message is not valid JSON: {exc.msg}") from exc
        if isinstance(parsed, dict):
            parsed = parsed.get("pipelines")
        if parsed is None:
            return None
        if not isinstance(parsed, list) or not all(isinstance(n, str) for n in parsed):
            raise EventError("schedule message: 'pipelines' must be a list of names")
        return [n for n in parsed if n] or None
    return [n.strip() for n in text.split(",") if n.strip()] or None
