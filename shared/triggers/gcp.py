"""What the Cloud Functions event handlers call: one CloudEvent's attributes and data in.

Each function parses the event with :mod:`shared.triggers.events`, calls
:mod:`shared.triggers.service`, logs the outcome with the event's ids (so a log search finds
every line of one delivery) and settles failures with :mod:`shared.triggers.delivery`: a
transient failure is raised, so ``--retry`` redelivers; a permanent one is logged for Error
Reporting and the delivery acknowledged. Storage events and schedule messages also redeliver
an unexpected exception (a bug, a module missing from the deploy): only input drivepipe knows
is bad is acknowledged.

Every failure is logged once, as one JSON line with the event's ids, before it is raised;
:func:`quiet_redelivery` then answers the platform 503 instead of letting functions-framework
print the traceback again as plain text.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from shared import deadline
from shared.log import get_logger
from shared.triggers import service
from shared.triggers.delivery import (
    Failure,
    attempt,
    log_failure,
    queue_item_transient,
    unexpected_or_transient,
)
from shared.triggers.events import (
    cloudevent_context,
    cloudevent_data,
    from_gcs_cloudevent,
    pipelines_from_pubsub,
    pubsub_message,
)

log = get_logger("gcp")
T = TypeVar("T")
_LOGGED = "_drivepipe_logged"  # set on an exception once its failure line is written


def _deliver(
    name: str,
    context: Mapping[str, Any],
    work: Callable[[], T],
    transient: Callable[[BaseException], bool] = unexpected_or_transient,
) -> T | None:
    """``work()`` under the delivery policy, within the function's deadline (its deployed
    timeout, :func:`shared.deadline.from_env`); ``None`` when a permanent failure was dropped."""
    with deadline.within(deadline.from_env()):
        result = attempt(work, catch_all=True, transient=transient)
    if not isinstance(result, Failure):
        return result
    log_failure(log, name, result, context)
    setattr(result.error, _LOGGED, True)
    result.raise_if_transient()
    return None


Handler = Callable[[Any], None]


def quiet_redelivery(handler: Handler) -> Handler:
    """Fail a delivery that wants redelivery with a 503 and no second, plain-text traceback.

    The failure was logged already (one JSON line with the event's ids); Eventarc and Pub/Sub
    redeliver on any non-2xx answer. Under functions-framework a ``werkzeug`` HTTP error is
    answered as it is, where any other exception is printed by Flask and answered 500.
    """

    @functools.wraps(handler)
    def wrapper(event: Any) -> None:
        try:
            handler(event)
        except Exception as exc:
            if not getattr(exc, _LOGGED, False):
                log.exception("%s failed before its event was parsed", handler.__name__)
            from werkzeug.exceptions import ServiceUnavailable

            description = f"redelivery wanted: {type(exc).__name__} (see the function's logs)"
            raise ServiceUnavailable(description=description) from exc

    return wrapper


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
        failed = ((done.get("summary") or {}).get("counts") or {}).get("failed")
        # the uploaded file could not be read: quarantined and acknowledged, logged as ERROR
        level = logging.ERROR if failed else logging.INFO
        log.log(level, "on_upload %s", done.get("outcome"), extra=extra)


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


def on_push_message(attributes: Mapping[str, Any], data: Any) -> None:
    """A handed-off push sync (Pub/Sub): a failure is raised, so Pub/Sub redelivers it."""
    from shared.triggers.push_worker import on_push_message as run_owed_sync

    context = cloudevent_context(attributes)

    def work() -> dict[str, Any]:
        return run_owed_sync(pubsub_message(cloudevent_data(data)).body)

    result = _deliver("push_worker", context, work, transient=queue_item_transient)
    if result is not None:
        log.info("push message %s", result.get("outcome"), extra={**context, **result})
