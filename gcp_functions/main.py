"""Cloud Functions (gen2) entry points: thin adapters from GCP requests and events to the core.

Three functions deploy from this one source directory (see ``deploy/package_gcp.py``):

- ``sync_http``   HTTP: ``POST /sync``, ``GET /runs/<id>``, ``GET /health`` (and ``GET /``).
- ``on_upload``   CloudEvent ``google.cloud.storage.object.v1.finalized`` from the input bucket.
- ``on_schedule`` CloudEvent ``google.cloud.pubsub.topic.v1.messagePublished`` (Cloud Scheduler).
- ``fanout_worker`` CloudEvent from the work topic (``DRIVEPIPE_FANOUT_TOPIC``): one work item.
- ``fanout_dead_letter`` CloudEvent from the work subscription's dead-letter topic.

Event functions are deployed with ``--retry``: a :class:`RetryableError` is re-raised so the
delivery fails and Eventarc redelivers it; a permanent failure (bad event, bad file, bad
request file) is logged and the delivery is acknowledged, so nothing loops forever.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import functions_framework

from shared import log
from shared.errors import DrivepipeError, EventError, RetryableError, StorageError, is_transient
from shared.triggers import service
from shared.triggers.events import from_gcs_cloudevent, pipelines_from_pubsub
from shared.triggers.http import Response

if TYPE_CHECKING:
    import flask
    from cloudevents.http import CloudEvent

# The config travels next to this module in the deployed source (read lazily by the core).
service.configure(base_dir=Path(__file__).parent, default="drivepipe.toml")
log.configure()
logger = log.get_logger("gcp")

# Makes an ERROR line without a stack trace show up in Error Reporting too.
REPORTED_ERROR = (
    "type.googleapis.com/google.devtools.clouderrorreporting.v1beta1.ReportedErrorEvent"
)
_FUNCTION_NAMES = {"sync_http", "sync-http", "drivepipe-sync"}
HttpResult = tuple[str, int, dict[str, str]]


def _json_result(response: Response) -> HttpResult:
    headers = {"Content-Type": "application/json", **response.headers}
    return json.dumps(response.body, default=str), response.status, headers


def _error(status: int, code: str, message: str, **headers: str) -> HttpResult:
    body = {"error": {"code": code, "message": message}}
    return json.dumps(body), status, {"Content-Type": "application/json", **headers}


def _route_parts(path: str) -> list[str]:
    """Path segments, minus a leading function name (present when served by some proxies)."""
    parts = [p for p in path.split("/") if p]
    names = _FUNCTION_NAMES | {os.environ.get("K_SERVICE", "")}
    if parts and parts[0] in names:
        parts = parts[1:]
    return parts


@functions_framework.http
def sync_http(request: flask.Request) -> HttpResult:
    """``POST /sync`` starts a sync; ``GET /runs/<id>`` reads a manifest; ``GET /health``."""
    try:
        return _dispatch(request)
    except (RetryableError, StorageError) as exc:
        logger.warning("sync_http: transient failure: %s", exc)
        retry_after = {"Retry-After": "30"}
        return _error(503, "unavailable", f"temporarily unavailable: {exc}", **retry_after)
    except Exception:
        logger.exception("sync_http: unexpected error on %s %s", request.method, request.path)
        return _error(500, "internal", "internal error; see the function's logs")


def _dispatch(request: flask.Request) -> HttpResult:
    parts = _route_parts(request.path)
    if parts == ["sync"]:
        if request.method != "POST":
            return _error(405, "method_not_allowed", "use POST /sync", Allow="POST")
        return _json_result(service.http_sync(request.get_data(), trigger="http"))
    if parts in ([], ["health"]):
        if request.method not in ("GET", "HEAD"):
            return _error(405, "method_not_allowed", "use GET", Allow="GET, HEAD")
        return _json_result(service.health())
    if len(parts) == 2 and parts[0] == "runs":
        if request.method not in ("GET", "HEAD"):
            return _error(405, "method_not_allowed", "use GET", Allow="GET, HEAD")
        return _json_result(service.http_get_run(parts[1]))
    return _error(404, "not_found", f"no route for {request.method} {request.path}")


def _event_context(event: CloudEvent) -> dict[str, Any]:
    attributes = event.get_attributes()
    return {
        "event_id": attributes.get("id"),
        "event_type": attributes.get("type"),
        "event_source": attributes.get("source"),
        "event_subject": attributes.get("subject"),
    }


def _event_data(event: CloudEvent) -> Mapping[str, Any]:
    data = event.data
    if isinstance(data, bytes | str):
        try:
            data = json.loads(data)
        except ValueError:
            raise EventError("CloudEvent data is not a JSON object") from None
    if not isinstance(data, Mapping):
        raise EventError("CloudEvent data is not a JSON object")
    return data


class _Delivery:
    """``with _Delivery(name, context) as delivery:`` around an event's work.

    A transient failure propagates, so ``--retry`` redelivers the event; any other drivepipe
    failure is logged for Error Reporting and the delivery acknowledged (``delivery.dropped``).
    """

    def __init__(self, name: str, context: dict[str, Any]) -> None:
        self.name, self.context, self.dropped = name, context, False

    def __enter__(self) -> _Delivery:
        return self

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> bool:
        if not isinstance(exc, EventError | DrivepipeError):
            return False
        if is_transient(exc):
            logger.exception(
                "%s failed transiently; redelivery wanted", self.name, extra=self.context
            )
            return False
        logger.error(
            "%s dropped a delivery: %s",
            self.name,
            exc,
            extra={**self.context, "@type": REPORTED_ERROR},
        )
        self.dropped = True
        return True


@functions_framework.cloud_event
def on_upload(event: CloudEvent) -> None:
    """A GCS object was finalized: transform it, start a requested sync, or ignore it."""
    context = _event_context(event)
    with _Delivery("on_upload", context) as delivery:
        object_event = from_gcs_cloudevent(event.get_attributes(), _event_data(event))
        result = service.on_object(object_event, trigger="gcs")
    if delivery.dropped:
        return
    logger.info(
        "on_upload %s",
        result.get("outcome"),
        extra={
            **context,
            "object": object_event.url,
            "generation": object_event.version,
            "outcome": result.get("outcome"),
            "reason": result.get("reason"),
            "summary": result.get("summary"),
        },
    )


@functions_framework.cloud_event
def on_schedule(event: CloudEvent) -> None:
    """Cloud Scheduler published to the topic: sync the named (or all scheduled) pipelines."""
    context = _event_context(event)
    with _Delivery("on_schedule", context) as delivery:
        names = pipelines_from_pubsub(event.get_attributes(), _event_data(event))
        results = service.on_schedule(names, trigger="scheduler")
    if delivery.dropped:
        return
    logger.info(
        "on_schedule ran %d pipeline(s)",
        len(results),
        extra={**context, "pipelines": names, "results": results},
    )


def pubsub_message(event: CloudEvent) -> tuple[bytes, dict[str, str], int | None]:
    """The message bytes, attributes and delivery attempt of a Pub/Sub CloudEvent."""
    data = _event_data(event)
    message = data.get("message")
    if not isinstance(message, Mapping) or not isinstance(message.get("data"), str):
        raise EventError("not a Pub/Sub message: data.message.data is missing")
    try:
        body = base64.b64decode(message["data"], validate=True)
    except ValueError:
        raise EventError("Pub/Sub message data is not base64") from None
    attributes = message.get("attributes")
    attempt = data.get("deliveryAttempt") or message.get("deliveryAttempt")
    return (
        body,
        dict(attributes) if isinstance(attributes, Mapping) else {},
        int(attempt) if str(attempt or "").isdigit() else None,
    )


@functions_framework.cloud_event
def fanout_worker(event: CloudEvent) -> None:
    """One fan-out work item. A crash is re-raised (``--retry`` redelivers; after the
    subscription's ``--max-delivery-attempts`` it goes to the dead-letter topic)."""
    context = _event_context(event)
    try:
        body, _, attempt = pubsub_message(event)
    except EventError as exc:
        logger.error("fanout_worker dropped a delivery: %s", exc, extra=context)
        return
    try:
        result = service.on_work_item(body, attempt=attempt or 1)
    except Exception:
        logger.exception("work item failed; redelivery wanted", extra=context)
        raise
    logger.info("work item %s", result.get("outcome"), extra={**context, **result})


@functions_framework.cloud_event
def fanout_dead_letter(event: CloudEvent) -> None:
    """A dead-lettered work item: recorded as failed in its run, with the last error."""
    context = _event_context(event)
    try:
        body, attributes, _ = pubsub_message(event)
    except EventError as exc:
        logger.error("fanout_dead_letter dropped a delivery: %s", exc, extra=context)
        return
    count = attributes.get("CloudPubSubDeadLetterSourceDeliveryCount", "")
    result = service.on_dead_letter(body, deliveries=int(count) if count.isdigit() else None)
    logger.warning("dead-lettered work item %s", result.get("outcome"), extra={**context, **result})
