"""Asynchronous invocations that failed every attempt, recorded instead of lost.

S3 notifications and EventBridge schedules invoke their functions asynchronously: Lambda
retries a failed invocation twice and then drops the event, unless the function has an
on-failure destination. Ours is an SQS queue (``DRIVEPIPE_FAILURE_QUEUE``), whose consumer
calls :func:`record` for each invocation record Lambda puts there::

    {"version": "1.0", "timestamp": "...",
     "requestContext": {"requestId": "...", "functionArn": "arn:aws:lambda:R:A:function:F:$LATEST",
                        "condition": "RetriesExhausted" | "EventAgeExceeded",
                        "approximateInvokeCount": 3},
     "requestPayload": <the original event>,
     "responseContext": {"statusCode": 200, "functionError": "Unhandled"},
     "responsePayload": {"errorType": "...", "errorMessage": "...", "stackTrace": [...]}}

Each record becomes a run manifest (``_runs/<run id>.json``, trigger ``<trigger>:failed``)
in the destination of every pipeline the event concerned: an upload's object is listed as a
``failed`` input with the error, a schedule tick as a note. A request file's sync is not lost
either: it is deferred (:mod:`shared.run.deferred`) and noted, so it runs when the pipeline's
next sync ends, at the latest on the next schedule tick. The run id is derived from the
invocation's request id, so a redelivered record rewrites the same manifest. Each manifest is
finished like any run's (:func:`shared.run.finish.finish_run`): the pipeline's notification
(an upload Lambda gave up on is a failed input), the history index, the metric line.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.config import Pipeline
from shared.errors import ApiError, EventError, StorageNotFound
from shared.log import get_logger
from shared.run import deferred
from shared.run.deferred import DeferredRequest
from shared.run.finish import finish_run
from shared.run.manifest import InputRecord, RunManifest
from shared.run.single import relative_to_prefix
from shared.storage import open_storage
from shared.triggers import service
from shared.triggers.events import ObjectEvent, from_s3_event, pipelines_from_detail
from shared.triggers.http import parse_json_object

log = get_logger("failed")


@dataclass(frozen=True)
class FailedInvocation:
    """What Lambda says about an asynchronous invocation it gave up on."""

    request_id: str
    function: str
    condition: str
    attempts: int
    error: str
    timestamp: str
    payload: Mapping[str, Any]

    @property
    def run_id(self) -> str:
        """A run id for this failure: its time, and 8 hex digits of the request id."""
        try:
            when = datetime.fromisoformat(self.timestamp.replace("Z", "+00:00"))
        except ValueError:
            raise EventError(f"invocation record: bad timestamp {self.timestamp!r}") from None
        digest = hashlib.sha256(self.request_id.encode()).hexdigest()[:8]
        return f"{when.strftime('%Y%m%dT%H%M%SZ')}-{digest}"

    def reason(self) -> str:
        """One line for the manifest: which function gave up, after how many tries, on what."""
        return (
            f"{self.function} failed {self.attempts} time(s) ({self.condition}): {self.error} "
            f"[Lambda request {self.request_id}]"
        )


def failed_invocation(body: str | bytes | Mapping[str, Any]) -> FailedInvocation:
    """Parse one on-failure destination record (an SQS message body); :class:`EventError`."""
    try:
        record = json.loads(body) if isinstance(body, str | bytes) else body
    except json.JSONDecodeError as exc:
        raise EventError(f"invocation record is not JSON: {exc}") from None
    if not isinstance(record, Mapping) or not isinstance(record.get("requestContext"), Mapping):
        raise EventError("invocation record: missing 'requestContext'")
    context = record["requestContext"]
    payload = record.get("requestPayload")
    if not isinstance(payload, Mapping):
        raise EventError("invocation record: 'requestPayload' is not an event object")
    response = record.get("responsePayload")
    if isinstance(response, Mapping) and response.get("errorType"):
        error = f"{response.get('errorType')}: {response.get('errorMessage', '')}"
    else:
        error = str(context.get("condition") or "no response (timeout or out of memory?)")
    arn = str(context.get("functionArn", ""))
    return FailedInvocation(
        request_id=str(context.get("requestId", "")),
        function=arn.split(":")[6] if arn.count(":") >= 6 else arn,
        condition=str(context.get("condition", "")),
        attempts=int(context.get("approximateInvokeCount") or 0),
        error=error,
        timestamp=str(record.get("timestamp", "")),
        payload=payload,
    )


def _objects(payload: Mapping[str, Any]) -> list[ObjectEvent]:
    objects = []
    for raw in payload.get("Records") or []:
        try:
            objects += from_s3_event({"Records": [raw]})
        except EventError as exc:
            log.error("a failed S3 record is malformed", extra={"error": str(exc)})
    return objects


def _pipeline_for(obj: ObjectEvent) -> tuple[Pipeline, str] | None:
    """The pipeline whose incoming prefix holds ``obj``, and its path there."""
    for pipeline in service.config().pipelines.values():
        incoming = pipeline.source.incoming_url
        relpath = relative_to_prefix(obj.url, incoming) if incoming else None
        if relpath:
            return pipeline, relpath
    return None


def _deferred_request(obj: ObjectEvent) -> DeferredRequest | None:
    """A request file's sync, kept to run at the pipeline's next sync end (or schedule tick)
    instead of lost; None when ``obj`` is no request file, or one that can never run."""
    requests_url = service.config().settings.requests_url
    relpath = relative_to_prefix(obj.url, requests_url) if requests_url else None
    if not requests_url or not relpath or not relpath.endswith(".json"):
        return None
    try:
        body = parse_json_object(open_storage(requests_url).read(relpath))
        request = service.sync_request_from_body(body, trigger="s3:request")
    except StorageNotFound:
        return None  # deleted since: nothing left to run
    except ApiError as exc:
        log.error(
            "failed request file is not a valid request",
            extra={"url": obj.url, "error": exc.message},
        )
        return None
    return DeferredRequest(request.pipeline.name, obj.dedupe_id, obj.url, body, request.trigger)


def _manifest(failed: FailedInvocation, pipeline: Pipeline, trigger: str) -> RunManifest:
    return RunManifest(
        run_id=failed.run_id,
        pipeline=pipeline.name,
        trigger=f"{trigger}:failed",
        source=pipeline.source.incoming_url or pipeline.source.folder_id or "",
        destination=pipeline.output.url,
        notes=[failed.reason()],
    )


def record(failed: FailedInvocation) -> dict[str, Any]:
    """Write the failure into the manifests of the pipelines it concerned; what was written.

    A storage failure raises (the queue redelivers the record); an event no pipeline takes is
    logged at ERROR with the whole payload, which is then the only record of it.
    """
    manifests: dict[str, RunManifest] = {}
    if "Records" in failed.payload:
        trigger = "s3"
        for obj in _objects(failed.payload):
            waiting = _deferred_request(obj)
            if waiting is not None:
                pipeline = service.config().pipelines[waiting.pipeline]
                deferred.defer(open_storage(pipeline.output.url), waiting)
                manifest = manifests.setdefault(pipeline.name, _manifest(failed, pipeline, "s3"))
                manifest.notes.append(
                    f"request file {obj.url} deferred: it runs when the next sync of the "
                    "pipeline ends, at the latest on the next schedule tick"
                )
                continue
            found = _pipeline_for(obj)
            if found is None:
                continue
            pipeline, relpath = found
            manifest = manifests.setdefault(pipeline.name, _manifest(failed, pipeline, trigger))
            manifest.inputs.append(
                InputRecord(
                    source_id=obj.url,
                    path=relpath,
                    size=obj.size,
                    status="failed",
                    error=failed.reason(),
                )
            )
    else:
        trigger = "schedule"
        cfg = service.config()
        try:
            names = pipelines_from_detail(failed.payload.get("detail"))
        except EventError:
            names = None
        chosen = [p for p in cfg.pipelines.values() if (p.name in names if names else p.scheduled)]
        for pipeline in chosen:
            manifests[pipeline.name] = _manifest(failed, pipeline, trigger)
    pipelines = service.config().pipelines
    for name, manifest in manifests.items():
        dest = open_storage(manifest.destination)
        finish_run(dest, manifest, notify=pipelines[name].notify)  # notifying never raises
    if not manifests:
        log.error(
            "failed invocation concerns no pipeline; this log line is its only record",
            extra={"reason": failed.reason(), "payload": json.dumps(failed.payload)[:20000]},
        )
    else:
        log.error(
            "failed invocation recorded",
            extra={
                "reason": failed.reason(),
                "run_id": failed.run_id,
                "pipelines": list(manifests),
            },
        )
    return {
        "outcome": "recorded" if manifests else "logged",
        "run_id": failed.run_id,
        "pipelines": sorted(manifests),
        "trigger": trigger,
    }
