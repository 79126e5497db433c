"""What the Lambda handlers call: AWS event dicts in, outcomes and batch responses out.

Each function takes the plain event dict Lambda delivers (``event.to_dict()`` in Chalice),
parses it with :mod:`shared.triggers.events`, calls :mod:`shared.triggers.service` and settles
failures with :mod:`shared.triggers.delivery`. Every record is reported on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, TypeVar

from shared import deadline
from shared import log as logs
from shared.log import get_logger
from shared.triggers import service
from shared.triggers.delivery import (
    Failure,
    attempt,
    queue_item_transient,
    unexpected_or_transient,
)
from shared.triggers.events import from_s3_event, pipelines_from_detail, sqs_attempt

log = get_logger("aws")
T = TypeVar("T")


def s3_notification(event: Mapping[str, Any], *, trigger: str = "s3") -> list[dict[str, Any]]:
    """Handle every record of an S3 notification; one outcome per object.

    A bad record is reported, never fatal to the others; a transient failure is re-raised
    after all records so Lambda redelivers the event (records already done come back as
    ``duplicate``).
    """
    records = event.get("Records")
    outcomes: list[dict[str, Any]] = []
    retry: Failure | None = None
    for index, record in enumerate(records if isinstance(records, list) else [None]):
        objects = attempt(partial(from_s3_event, {"Records": [record]}))
        if isinstance(objects, Failure):
            outcomes.append(
                _report(index, None, {"outcome": "error", "reason": str(objects.error)})
            )
            continue
        for obj in objects:
            work = partial(service.on_object, obj, trigger=trigger)
            result = attempt(work, catch_all=True, transient=unexpected_or_transient)
            if isinstance(result, Failure):
                retry = retry or (result if result.transient else None)
                result = _record_failure(index, obj.key, result)
            outcomes.append(_report(index, obj.url, result))
    if retry is not None:
        retry.raise_if_transient()
    return outcomes


def _record_failure(index: int, key: str, failure: Failure) -> dict[str, Any]:
    exc = failure.error
    if failure.transient:
        return {"outcome": "retry", "reason": str(exc)}
    log.error("s3 record failed", exc_info=exc, extra={"record": index, "key": key})
    return {"outcome": "error", "reason": f"{type(exc).__name__}: {exc}"}


def _report(index: int, url: str | None, result: dict[str, Any]) -> dict[str, Any]:
    outcome = {"record": index, "url": url, **result}
    level = "warning" if result.get("outcome") in ("error", "retry") else "info"
    getattr(log, level)(
        "s3 record",
        extra={
            "record": index,
            "url": url,
            "outcome": result.get("outcome"),
            "reason": result.get("reason"),
            "run_id": result.get("run_id"),
        },
    )
    return outcome


def scheduled(detail: Any, *, trigger: str = "schedule") -> list[dict[str, Any]]:
    """An EventBridge schedule: sync every scheduled pipeline, or those in ``detail.pipelines``.

    A detail that names no valid list is reported and acknowledged; a transient failure of a
    sync is raised (after every pipeline had its turn) so Lambda retries the tick.
    """
    names = attempt(partial(pipelines_from_detail, detail))
    if isinstance(names, Failure):
        log.warning("schedule event rejected", extra={"reason": str(names.error)})
        return [{"outcome": "error", "reason": str(names.error)}]
    return service.on_schedule(names, trigger=trigger)


def sqs_work(event: Mapping[str, Any]) -> dict[str, Any]:
    """Process each work item; return the partial batch response naming the ones that failed.

    Lambda honours ``batchItemFailures`` only when the event source mapping has
    ``FunctionResponseTypes=["ReportBatchItemFailures"]``, which Chalice does not set:
    ``deploy/package_aws.py`` prints the ``aws lambda update-event-source-mapping`` command.
    """
    failures: list[dict[str, str]] = []
    for record in event.get("Records") or []:
        message_id = str(record.get("messageId", ""))
        work = partial(service.on_work_item, record.get("body", ""), attempt=sqs_attempt(record))
        result = attempt(work, catch_all=True, transient=queue_item_transient)
        if not isinstance(result, Failure):
            log.info("work item", extra={"message_id": message_id, **result})
            continue
        error = f"{type(result.error).__name__}: {result.error}"
        if result.transient:  # this item goes back to the queue, the others are done
            log.warning(
                "work item failed; SQS will redeliver it",
                extra={"message_id": message_id, "error": error},
            )
            failures.append({"itemIdentifier": message_id})
        else:
            log.error("dropped a work item", extra={"message_id": message_id, "error": error})
    return {"batchItemFailures": failures}


def sqs_push(event: Mapping[str, Any]) -> dict[str, Any]:
    """The push worker: each message runs its pipeline's owed sync (the first one of a burst
    does; the others find nothing owed); transient failures go back to the queue."""
    from shared.triggers.push_worker import on_push_message

    failures: list[dict[str, str]] = []
    for record in event.get("Records") or []:
        message_id = str(record.get("messageId", ""))
        work = partial(on_push_message, record.get("body", ""))
        result = attempt(work, catch_all=True, transient=queue_item_transient)
        if not isinstance(result, Failure):
            log.info("push message", extra={"message_id": message_id, **result})
        elif result.transient:
            log.warning(
                "push sync failed; SQS will redeliver it",
                extra={"message_id": message_id, "error": f"{result.error}"},
            )
            failures.append({"itemIdentifier": message_id})
        else:
            log.error(
                "dropped a push message",
                extra={"message_id": message_id, "error": str(result.error)},
            )
    return {"batchItemFailures": failures}


def sqs_dead_letters(event: Mapping[str, Any]) -> dict[str, Any]:
    """Record every dead-lettered item as failed in its run (idempotent)."""
    failures: list[dict[str, str]] = []
    for record in event.get("Records") or []:
        work = partial(service.on_dead_letter, record.get("body", ""))
        result = attempt(work, catch_all=True, transient=queue_item_transient)
        if not isinstance(result, Failure):
            log.warning("dead-lettered work item", extra=result)
        elif result.transient:
            log.error("could not record a dead-lettered item", exc_info=result.error)
            failures.append({"itemIdentifier": str(record.get("messageId", ""))})
        else:
            log.error("dropped a dead-lettered item", extra={"error": str(result.error)})
    return {"batchItemFailures": failures}


def sqs_failed_invocations(event: Mapping[str, Any]) -> dict[str, Any]:
    """Record each failed asynchronous invocation (on-failure destination records) in the
    manifests of the pipelines it concerned; a record that could not be written goes back."""
    from shared.triggers import failed

    failures: list[dict[str, str]] = []
    for record in event.get("Records") or []:
        work = partial(
            lambda body: failed.record(failed.failed_invocation(body)), record.get("body")
        )
        result = attempt(work, catch_all=True, transient=queue_item_transient)
        if not isinstance(result, Failure):
            continue
        if result.transient:
            log.error("could not record a failed invocation", exc_info=result.error)
            failures.append({"itemIdentifier": str(record.get("messageId", ""))})
        else:
            log.error("not an invocation record", extra={"error": str(result.error)})
    return {"batchItemFailures": failures}


def invocation_middleware(event: Any, get_response: Callable[[Any], T]) -> T:
    """Chalice middleware for every event type, so no handler passes its context on itself:

    - the handler runs within the invocation's deadline, from its Lambda context
      (:mod:`shared.deadline`);
    - each log line of the invocation carries its ``aws_request_id``;
    - Chalice's own HTTP errors (405, 415...) take our error shape.

    ``event`` is Chalice's event object (its ``context``) or, for a route, the request (its
    ``lambda_context``).
    """
    context = getattr(event, "lambda_context", None) or getattr(event, "context", None)
    with (
        logs.invocation(aws_request_id=getattr(context, "aws_request_id", None)),
        deadline.within(deadline.from_lambda_context(context)),
    ):
        return framework_error(get_response(event))


def framework_error(response: Any) -> Any:
    """A Chalice error response (``{"Code": ..., "Message": ...}``) as ``{"error": {...}}``;
    anything else unchanged."""
    body = getattr(response, "body", None)
    if not (isinstance(body, dict) and set(body) == {"Code", "Message"}):
        return response
    code = "".join(f"_{c.lower()}" if c.isupper() else c for c in str(body["Code"])).lstrip("_")
    response.body = {"error": {"code": code.removesuffix("_error"), "message": body["Message"]}}
    return response
