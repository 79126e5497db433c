"""Run the request-file syncs that waited for a pipeline's running sync (see
:mod:`shared.run.deferred`).

:func:`defer` is what a request file does when the pipeline's sync lease is held: store the
request, then look once more (the holder may have ended meanwhile). :func:`run_pending` is
what every path that ends a sync calls afterwards (``POST /sync``, the schedule, a request
file, a fan-out work item; not the dead-letter consumer): each waiting request runs at most
once (the storage event's claim, as for any upload), oldest first, until none is left or
another sync holds the lease again, whose end then runs the rest. A failure leaves the
request waiting for the next sync's end.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.config import Pipeline
from shared.errors import LeaseHeld
from shared.log import get_logger
from shared.run import deferred
from shared.run.deferred import DeferredRequest
from shared.storage import open_storage

log = get_logger("deferred")
MAX_PER_DRAIN = 50  # bounds one invocation's extra work; the next sync's end runs the rest
# Runs one waiting request's sync (once per event): its outcome, or None while the lease is
# held. shared.triggers.service provides it.
Runner = Callable[[DeferredRequest], "dict[str, Any] | None"]


def defer(
    pipeline: Pipeline, request: DeferredRequest, blocked: LeaseHeld, runner: Runner
) -> dict[str, Any]:
    """Keep ``request`` until the blocking sync ends; returns the event's outcome."""
    held = DeferredRequest(**{**request.__dict__, "blocked_by": blocked.holder.run_id})
    deferred.defer(open_storage(pipeline.output.url), held)
    log.warning(
        "request file deferred: another sync is running",
        extra={"url": request.url, "pipeline": request.pipeline, "blocked_by": str(blocked)},
    )
    ran = run_pending(pipeline, runner).get(request.dedupe_id)
    if ran is not None:  # the other sync ended meanwhile: it ran now
        return ran
    return {
        "outcome": "deferred",
        "reason": f"another sync is running ({blocked}); this one runs when it ends",
        "summary": None,
    }


def run_pending(pipeline: Pipeline, runner: Runner) -> dict[str, dict[str, Any]]:
    """Run what waits for ``pipeline``; never raises (what fails keeps waiting).

    Returns each run request's outcome by its event's dedupe id.
    """
    outcomes: dict[str, dict[str, Any]] = {}
    try:
        dest = open_storage(pipeline.output.url)
        for _ in range(MAX_PER_DRAIN):
            waiting = deferred.pending(dest, pipeline.name)
            waiting = [r for r in waiting if r.dedupe_id not in outcomes]
            if not waiting:
                break
            outcome = runner(waiting[0])
            if outcome is None:
                break  # the lease is held again: its holder's end runs the rest
            outcomes[waiting[0].dedupe_id] = outcome
            deferred.done(dest, waiting[0])
            log.info("deferred request ran", extra={"url": waiting[0].url, **outcome})
    except Exception:
        log.exception("deferred requests stay waiting", extra={"pipeline": pipeline.name})
    return outcomes
