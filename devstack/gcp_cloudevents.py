"""CloudEvents exactly as GCP delivers them to Cloud Functions gen2, for local delivery.

``gcs_finalize_event`` builds a ``google.cloud.storage.object.v1.finalized`` event from a
google-cloud-storage blob (data = the object resource, numbers as strings), and
``scheduler_event`` a ``google.cloud.pubsub.topic.v1.messagePublished`` event as Cloud
Scheduler → Pub/Sub → Eventarc produces it. ``deliver`` POSTs either one to a running
functions-framework server in binary or structured content mode.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote

import requests

GCS_FINALIZED = "google.cloud.storage.object.v1.finalized"
PUBSUB_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"
Mode = Literal["binary", "structured"]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _header_value(value: str) -> str:
    """Percent-encode what HTTP headers cannot carry (CloudEvents HTTP binding §3.1.3.2)."""
    return quote(value, safe=" !#$&'()*+,-./:;<=>?@[]^_`{|}~")


@dataclass(frozen=True)
class CloudEventMessage:
    """CloudEvent context attributes plus JSON data."""

    attributes: dict[str, str]
    data: dict[str, Any]

    def binary(self) -> tuple[dict[str, str], bytes]:
        """Binary content mode: ``ce-*`` headers, the data alone as the JSON body."""
        headers = {f"ce-{k}": _header_value(v) for k, v in self.attributes.items()}
        headers["Content-Type"] = "application/json"
        return headers, json.dumps(self.data, ensure_ascii=False).encode("utf-8")

    def structured(self) -> tuple[dict[str, str], bytes]:
        """Structured content mode: the whole event as ``application/cloudevents+json``."""
        body = {**self.attributes, "datacontenttype": "application/json", "data": self.data}
        headers = {"Content-Type": "application/cloudevents+json; charset=utf-8"}
        return headers, json.dumps(body, ensure_ascii=False).encode("utf-8")


def object_resource(
    bucket: str,
    name: str,
    *,
    generation: str | int,
    size: int,
    content_type: str = "application/octet-stream",
    md5_hash: str = "",
    crc32c: str = "",
    etag: str = "",
    metageneration: str | int = "1",
    time_created: str | None = None,
    updated: str | None = None,
    storage_class: str = "STANDARD",
) -> dict[str, Any]:
    """A GCS object resource as the finalize event carries it (int64 fields as strings)."""
    created = time_created or _now()
    encoded = quote(name, safe="")
    generation = str(generation)
    return {
        "kind": "storage#object",
        "id": f"{bucket}/{name}/{generation}",
        "selfLink": f"https://www.googleapis.com/storage/v1/b/{bucket}/o/{encoded}",
        "name": name,
        "bucket": bucket,
        "generation": generation,
        "metageneration": str(metageneration),
        "contentType": content_type,
        "timeCreated": created,
        "updated": updated or created,
        "storageClass": storage_class,
        "timeStorageClassUpdated": created,
        "size": str(size),
        "md5Hash": md5_hash,
        "mediaLink": (
            f"https://storage.googleapis.com/download/storage/v1/b/{bucket}/o/"
            f"{encoded}?generation={generation}&alt=media"
        ),
        "crc32c": crc32c,
        "etag": etag or base64.b64encode(generation.encode()).decode(),
    }


def resource_from_blob(blob: Any) -> dict[str, Any]:
    """The event data for a google-cloud-storage ``Blob`` (as listed from the bucket)."""
    props: dict[str, Any] = getattr(blob, "_properties", {}) or {}
    return object_resource(
        blob.bucket.name,
        blob.name,
        generation=blob.generation or props.get("generation") or int(time.time() * 1e6),
        size=int(blob.size or props.get("size") or 0),
        content_type=blob.content_type or "application/octet-stream",
        md5_hash=blob.md5_hash or "",
        crc32c=blob.crc32c or "",
        etag=blob.etag or "",
        metageneration=blob.metageneration or props.get("metageneration") or "1",
        time_created=props.get("timeCreated"),
        updated=props.get("updated"),
        storage_class=props.get("storageClass") or "STANDARD",
    )


def gcs_finalize_event(resource: dict[str, Any]) -> CloudEventMessage:
    """``google.cloud.storage.object.v1.finalized`` for one object resource."""
    return CloudEventMessage(
        attributes={
            "id": str(uuid.uuid4().int)[:16],
            "specversion": "1.0",
            "type": GCS_FINALIZED,
            "source": f"//storage.googleapis.com/projects/_/buckets/{resource['bucket']}",
            "subject": f"objects/{resource['name']}",
            "time": resource.get("updated") or _now(),
        },
        data=resource,
    )


def scheduler_event(
    pipelines: list[str] | None,
    *,
    project: str = "local",
    topic: str = "drivepipe-schedule",
    body: str | None = None,
) -> CloudEventMessage:
    """A Cloud Scheduler message (``{"pipelines": [...]}``) delivered through Pub/Sub."""
    text = body if body is not None else json.dumps({"pipelines": pipelines or []})
    message_id = str(uuid.uuid4().int)[:16]
    published = _now()
    encoded = base64.b64encode(text.encode("utf-8")).decode("ascii")
    return CloudEventMessage(
        attributes={
            "id": message_id,
            "specversion": "1.0",
            "type": PUBSUB_PUBLISHED,
            "source": f"//pubsub.googleapis.com/projects/{project}/topics/{topic}",
            "time": published,
        },
        data={
            "message": {
                "data": encoded,
                "messageId": message_id,
                "message_id": message_id,
                "publishTime": published,
                "publish_time": published,
            },
            "subscription": f"projects/{project}/subscriptions/eventarc-local-{topic}-sub",
        },
    )


@dataclass(frozen=True)
class Delivery:
    """What the function answered to one POSTed event."""

    status: int
    text: str
    seconds: float

    @property
    def ok(self) -> bool:
        """2xx: Eventarc would consider the event handled."""
        return 200 <= self.status < 300


def deliver(
    url: str,
    event: CloudEventMessage,
    *,
    mode: Mode = "binary",
    timeout: float = 120.0,
    session: requests.Session | None = None,
) -> Delivery:
    """POST one event to a functions-framework server and report its answer."""
    headers, body = event.binary() if mode == "binary" else event.structured()
    began = time.monotonic()
    response = (session or requests).post(url, data=body, headers=headers, timeout=timeout)
    return Delivery(response.status_code, response.text.strip(), time.monotonic() - began)
