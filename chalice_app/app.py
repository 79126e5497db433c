"""drivepipe on AWS Lambda (Chalice): HTTP API, S3-upload trigger and schedule trigger.

The handlers are thin: each parses its event, calls :mod:`shared.triggers.service` and shapes the
response. Settings come from environment variables set per stage in ``.chalice/config.json``:

- ``DRIVEPIPE_HTTP_AUTH``: ``iam`` (SigV4, ``IAMAuthorizer``), ``api_key`` (``x-api-key``
  header) or ``none``. ``none`` is refused unless the stage also sets ``DRIVEPIPE_PUBLIC=true``.
- ``DRIVEPIPE_INPUT_BUCKET``: the bucket whose uploads trigger ``on_upload``.
- ``DRIVEPIPE_CONFIG``: the pipelines file; defaults to ``chalicelib/drivepipe.toml``.
- ``DRIVEPIPE_FANOUT_QUEUE`` / ``DRIVEPIPE_FANOUT_DLQ``: the SQS work queue and its dead-letter
  queue (names). When set, big syncs fan out to ``fanout_worker`` and dead-lettered items are
  recorded by ``fanout_dead_letter`` (see "Fan-out" in serverless-README.md).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from chalice import Chalice, IAMAuthorizer, Response
from chalice.app import CloudWatchEvent, S3Event, SQSEvent

from shared import log
from shared.errors import DrivepipeError, EventError, is_transient
from shared.triggers import service
from shared.triggers.events import from_s3_event, parse_pipeline_list
from shared.triggers.http import Response as CoreResponse

# Before the config is first read (schedule_expression, below). A relative path, as in
# config.json, is relative to this file, so chalicelib/drivepipe.toml is found from any cwd.
service.configure(base_dir=Path(__file__).parent, default="chalicelib/drivepipe.toml")

AUTH_MODES = ("iam", "api_key", "none")


class InsecureConfigError(RuntimeError):
    """The stage would expose the HTTP API without authentication by accident."""


def route_auth(mode: str | None, public: str | None) -> dict[str, Any]:
    """Keyword arguments for ``@app.route`` that enforce the configured authentication."""
    chosen = (mode or "none").strip().lower()
    if chosen == "iam":
        return {"authorizer": IAMAuthorizer()}
    if chosen == "api_key":
        return {"api_key_required": True}
    if chosen != "none":
        raise InsecureConfigError(
            f"DRIVEPIPE_HTTP_AUTH={mode!r} is not one of {', '.join(AUTH_MODES)}"
        )
    if (public or "").strip().lower() != "true":
        raise InsecureConfigError(
            "refusing to serve the HTTP API without authentication: set DRIVEPIPE_HTTP_AUTH "
            "to 'iam' or 'api_key' in the stage's environment_variables, or set "
            "DRIVEPIPE_PUBLIC=true to make an open API explicit"
        )
    return {}


def _input_bucket() -> str:
    bucket = os.environ.get("DRIVEPIPE_INPUT_BUCKET", "").strip()
    if not bucket:
        raise RuntimeError(
            "DRIVEPIPE_INPUT_BUCKET is not set: name the bucket whose uploads trigger "
            "on_upload in the stage's environment_variables (.chalice/config.json)"
        )
    return bucket


log.configure()
logger = log.get_logger("aws")
app = Chalice(app_name="drivepipe")
AUTH = route_auth(os.environ.get("DRIVEPIPE_HTTP_AUTH"), os.environ.get("DRIVEPIPE_PUBLIC"))
INPUT_BUCKET = _input_bucket()


def _http(resp: CoreResponse) -> Response:
    return Response(body=resp.body, status_code=resp.status, headers=dict(resp.headers))


@app.route("/sync", methods=["POST"], **AUTH)
def sync_http() -> Response:
    """Run one pipeline's Drive sync; the JSON body names the pipeline and its overrides."""
    return _http(service.http_sync(app.current_request.raw_body, trigger="http"))


@app.route("/health", methods=["GET"], **AUTH)
def health() -> Response:
    """Liveness and configuration check."""
    return _http(service.health())


@app.route("/runs/{run_id}", methods=["GET"], **AUTH)
def get_run(run_id: str) -> Response:
    """The manifest of one run."""
    return _http(service.http_get_run(run_id))


@app.on_s3_event(bucket=INPUT_BUCKET, events=["s3:ObjectCreated:*"])
def on_upload(event: S3Event) -> list[dict[str, Any]]:
    """Handle every record of an S3 notification (Chalice's ``S3Event`` reads only the first).

    No prefix filter: ``incoming/`` uploads and ``requests/`` files both arrive here and the
    core decides what each key means. A bad record is logged and reported, never fatal to the
    others; a transient failure is re-raised after all records so Lambda redelivers (records
    already done come back as ``duplicate``).
    """
    records = event.to_dict().get("Records")
    outcomes: list[dict[str, Any]] = []
    retry: DrivepipeError | None = None
    for index, record in enumerate(records if isinstance(records, list) else [None]):
        try:
            objects = from_s3_event({"Records": [record]})
        except EventError as exc:
            outcomes.append(_report(index, None, {"outcome": "error", "reason": str(exc)}))
            continue
        for obj in objects:
            try:
                result = service.on_object(obj, trigger="s3")
            except Exception as exc:  # one broken record must not stop the others
                if isinstance(exc, DrivepipeError) and is_transient(exc):
                    retry = exc
                    result = {"outcome": "retry", "reason": str(exc)}
                else:
                    logger.exception("s3 record failed", extra={"record": index, "key": obj.key})
                    result = {"outcome": "error", "reason": f"{type(exc).__name__}: {exc}"}
            outcomes.append(_report(index, obj.url, result))
    if retry is not None:
        raise retry
    return outcomes


def _report(index: int, url: str | None, result: dict[str, Any]) -> dict[str, Any]:
    outcome = {"record": index, "url": url, **result}
    level = "warning" if result.get("outcome") in ("error", "retry") else "info"
    getattr(logger, level)(
        "s3 record",
        extra={
            "record": index,
            "url": url,
            "outcome": result.get("outcome"),
            "reason": result.get("reason"),
        },
    )
    return outcome


@app.schedule(service.schedule_expression() or "rate(1 hour)")
def on_schedule(event: CloudWatchEvent) -> list[dict[str, Any]]:
    """Sync every scheduled pipeline (or those named in ``detail.pipelines``)."""
    detail = event.detail if isinstance(event.detail, dict) else {}
    try:
        pipelines = parse_pipeline_list(json.dumps(detail)) if detail else None
    except EventError as exc:
        logger.warning("schedule event rejected", extra={"reason": str(exc)})
        return [{"outcome": "error", "reason": str(exc)}]
    return service.on_schedule(pipelines, trigger="schedule")


# ---- fan-out workers (SQS) ------------------------------------------------------------------
FANOUT_SQS_BATCH = 5  # items per invocation; one bad item is reported alone (see below)


def queue_name(value: str) -> str:
    """The queue name from a name or a queue URL (``https://sqs.../123/NAME``)."""
    return value.strip().rstrip("/").rsplit("/", 1)[-1]


def sqs_attempt(record: dict[str, Any]) -> int:
    """The delivery number of an SQS record (``attributes.ApproximateReceiveCount``)."""
    raw = (record.get("attributes") or {}).get("ApproximateReceiveCount") or "1"
    return int(raw) if str(raw).isdigit() else 1


def work_records(event: SQSEvent) -> dict[str, Any]:
    """Process each record; return the partial batch response naming the ones that failed.

    Lambda honours ``batchItemFailures`` only when the event source mapping has
    ``FunctionResponseTypes=["ReportBatchItemFailures"]``, which Chalice does not set:
    ``deploy/package_aws.py`` prints the ``aws lambda update-event-source-mapping`` command.
    """
    failures: list[dict[str, str]] = []
    for record in event.to_dict().get("Records") or []:
        message_id = str(record.get("messageId", ""))
        try:
            result = service.on_work_item(record.get("body", ""), attempt=sqs_attempt(record))
            logger.info("work item", extra={"message_id": message_id, **result})
        except Exception as exc:  # this item goes back to the queue, the others are done
            logger.warning(
                "work item failed; SQS will redeliver it",
                extra={"message_id": message_id, "error": f"{type(exc).__name__}: {exc}"},
            )
            failures.append({"itemIdentifier": message_id})
    return {"batchItemFailures": failures}


def dead_letter_records(event: SQSEvent) -> dict[str, Any]:
    """Record every dead-lettered item as failed in its run (idempotent)."""
    failures: list[dict[str, str]] = []
    for record in event.to_dict().get("Records") or []:
        try:
            result = service.on_dead_letter(record.get("body", ""))
            logger.warning("dead-lettered work item", extra=result)
        except Exception:
            logger.exception("could not record a dead-lettered item")
            failures.append({"itemIdentifier": str(record.get("messageId", ""))})
    return {"batchItemFailures": failures}


FANOUT_QUEUE = os.environ.get("DRIVEPIPE_FANOUT_QUEUE", "").strip()
FANOUT_DLQ = os.environ.get("DRIVEPIPE_FANOUT_DLQ", "").strip()
FANOUT_MAX_CONCURRENCY = int(os.environ.get("DRIVEPIPE_FANOUT_MAX_CONCURRENCY") or 5)

if FANOUT_QUEUE:

    @app.on_sqs_message(
        queue=queue_name(FANOUT_QUEUE),
        batch_size=FANOUT_SQS_BATCH,
        maximum_concurrency=FANOUT_MAX_CONCURRENCY,  # bounds Drive requests (quota: see README)
    )
    def fanout_worker(event: SQSEvent) -> dict[str, Any]:
        """Process fan-out work items; failed ones are reported for redelivery."""
        return work_records(event)


if FANOUT_DLQ:

    @app.on_sqs_message(queue=queue_name(FANOUT_DLQ), batch_size=10)
    def fanout_dead_letter(event: SQSEvent) -> dict[str, Any]:
        """Work items that exhausted their deliveries: failed in the manifest, with why."""
        return dead_letter_records(event)
