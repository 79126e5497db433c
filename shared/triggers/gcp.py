"""What the Cloud Functions event handlers call: one CloudEvent's attributes and data in.

Each function parses the event with :mod:`shared.triggers.events`, calls
:mod:`shared.triggers.service`, logs the outcome with the event's ids (so a log search finds
every line of one delivery) and settles failures with :mod:`shared.triggers.delivery`: a
transient failure is raised, so ``--retry`` redelivers; a permanent one is logged for Error
Reporting and the delivery acknowledged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from shared.log import get_logger
from shared.triggers import service
from shared.triggers.delivery import Failure, attempt, log_failure, queue_item_transient
from shared.triggers.events import (
    cloudevent_context,
    cloudevent_data,
    from_gcs_cloudevent,
    pipelines_from_pubsub,
    pubsub_message,
)

log = get_logger("gcp")
T = TypeVar("T")


def _deliver(
    name: str,
    context: Mapping[str, Any],
    work: Callable[[], T],
    transient: Callable[[BaseException], bool] | None = None,
) -> T | None:
    """``work()`` under the delivery policy; ``None`` when a permanent failure was dropped."""
    if transient is None:
        result = attempt(work)
    else:
        result = attempt(work, catch_all=True, transient=transient)
    if not isinstance(result, Failure):
        return result
    log_failure(log, name, result, context)
    result.raise_if_transient()
    return None


def on_finalized(attributes: Mapping[str, Any], data: Any, *, trigger: str = "gcs") -> None:
    """A GCS object was finalized: transform it, start a requested sync, or ignore it."""
    context = cloudevent_context(attributes)

    def work() -> dict[str, Any]:
        obj = from_gcs_cloudevent(attributes, cloudevent_data(data))
        result = service.on_object(obj, trigger=trigger)
        return {**result, "object": obj.url, "generation": obj.version}

    done = _deliver("on_upload", context, work)
    if done is not None:
        fields = ("object", "generation", "outcome", "reason", "run_id", "summary")
        extra = {**context, **{f: done.get(f) for f in fields}}
        log.info("on_upload %s", done.get("outcome"), extra=extra)


def on_scheduler_message(attributes: Mapping[str, Any], data: Any) -> None:
    """Cloud Scheduler published to the topic: sync the named (or all scheduled) pipelines."""
    context = cloudevent_context(attributes)

    def work() -> tuple[list[str] | None, list[dict[str, Any]]]:
        names = pipelines_from_pubsub(attributes, cloudevent_data(data))
        return names, service.on_schedule(names, trigger="scheduler")

    done = _deliver("on_schedule", context, work)
    if done is not None:
        names, results = done
        extra = {**context, "pipelines": names, "results": results}
        log.info("on_schedule ran %d pipeline(s)", len(results), extra=extra)


def on_work_message(attributes: Mapping[str, Any], data: Any) -> None:
    """One fan-out work item. A failure is re-raised (``--retry`` redelivers; after the
    subscription's ``--max-delivery-attempts`` it goes to the dead-letter topic)."""
    context = cloudevent_context(attributes)

    def work() -> dict[str, Any]:
        message = pubsub_message(cloudevent_data(data))
        return service.on_work_item(message.body, attempt=message.attempt or 1)

    result = _deliver("fanout_worker", context, work, transient=queue_item_transient)
    if result is not None:
        log.info("work item %s", result.get("outcome"), extra={**context, **result})


def on_dead_letter_message(attributes: Mapping[str, Any], data: Any) -> None:
    """A dead-lettered work item: recorded as failed in its run, with the last error."""
    context = cloudevent_context(attributes)

    def work() -> dict[str, Any]:
        message = pubsub_message(cloudevent_data(data))
        count = message.attributes.get("CloudPubSubDeadLetterSourceDeliveryCount", "")
        deliveries = int(count) if count.isdigit() else None
        return service.on_dead_letter(message.body, deliveries=deliveries)

    result = _deliver("fanout_dead_letter", context, work, transient=queue_item_transient)
    if result is not None:
        outcome = result.get("outcome")
        log.warning("dead-lettered work item %s", outcome, extra={**context, **result})
