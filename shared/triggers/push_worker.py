"""The push worker: one sync handed off by Drive's notifications (:mod:`shared.triggers.push`).

:func:`on_push_message` is what the ``push_worker`` functions call with one queue message. It
runs the pipeline's sync only while one is owed (:mod:`shared.run.pending`): it first waits
until notifications have been quiet for ``DRIVEPIPE_PUSH_SETTLE_SECONDS`` (at most
:data:`MAX_SETTLE_WAIT` seconds), so a burst becomes one sync; a worker that finds the sync
lease held stops, since the running sync hands one more off at its end if it must. Push syncs
run inline: they apply the changes since the last sync, not the whole folder.

The schedule keeps the channels open (:mod:`shared.run.upkeep`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from shared.errors import LeaseHeld
from shared.log import get_logger
from shared.run import pending
from shared.run.push_queue import PushMessage
from shared.settings import runtime_settings
from shared.storage import Storage, open_storage
from shared.triggers import service

log = get_logger("push")
MAX_SETTLE_WAIT = 10.0


def on_push_message(
    body: str | bytes,
    *,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Run the owed sync a queue message names; BadWorkItem (dropped) if it is not one."""
    message = PushMessage.from_json(body)
    pipeline = service.config().get(message.pipeline)
    if pipeline is None or not pipeline.push:
        log.error("push message for no push pipeline", extra={"pipeline": message.pipeline})
        return {"outcome": "dropped", "reason": f"{message.pipeline}: no such push pipeline"}
    dest = open_storage(pipeline.output.url)
    if not _settled(dest, pipeline.name, clock, sleep):
        return {"outcome": "coalesced", "pipeline": pipeline.name, "reason": "nothing owed"}
    from shared.run.sync import SyncRequest, run_sync

    request = SyncRequest(pipeline=pipeline, trigger="push")
    try:
        manifest = _run_past_stalled(request, lambda: run_sync(request))
    except LeaseHeld as exc:
        reason = f"a running sync covers it ({exc})"
        return {"outcome": "coalesced", "pipeline": pipeline.name, "reason": reason}
    return {"outcome": "synced", "pipeline": pipeline.name, "summary": manifest.summary()}


def _settled(
    dest: Storage, pipeline: str, clock: Callable[[], float], sleep: Callable[[float], None]
) -> bool:
    """Wait until the requests have been quiet for the settle time; False if none is owed."""
    settle = runtime_settings().push_settle_seconds
    deadline = clock() + MAX_SETTLE_WAIT
    while True:
        request = pending.owed(dest, pipeline)
        if request is None:
            return False
        quiet = clock() - request.at
        if quiet >= settle or clock() >= deadline:
            return True
        sleep(min(settle - quiet, max(deadline - clock(), 0.0)))


def _run_past_stalled(request: Any, start: Callable[[], Any]) -> Any:
    """``start()``; once more if a fanned-out run whose finalizer died held the lease."""
    from shared.run.fanout.runs import finish_stalled_run

    try:
        return start()
    except LeaseHeld as held:
        if not finish_stalled_run(request.pipeline, held.holder):
            raise
    return start()
