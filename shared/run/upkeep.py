"""The schedule's upkeep of a push pipeline's notification channel.

:func:`channel_upkeep` runs after each scheduled sync of a push pipeline
(:func:`shared.triggers.service.on_schedule`): it opens, renews or reopens the channel
(:func:`shared.run.channels.maintain`), and calls the channel *silent* when the reconcile found
changes that no notification announced for ``DRIVEPIPE_PUSH_SILENT_MINUTES``: Drive may stop a
channel without a word, and the reconcile is what notices.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from shared.errors import ConfigError, DriveError, RetryableError, StorageError
from shared.log import get_logger
from shared.run import pending
from shared.settings import runtime_settings
from shared.storage import Storage, open_storage

if TYPE_CHECKING:
    from shared.config import Pipeline
    from shared.run.channels import ChannelRecord

log = get_logger("push")
CHANGED = ("written", "moved", "removed", "removed_kept", "removal_blocked", "failed")


def channel_upkeep(
    pipeline: Pipeline, result: dict[str, Any] | None, *, clock: Callable[[], float] = time.time
) -> dict[str, Any]:
    """After a scheduled sync: keep the pipeline's channel open (what was done, or the error)."""
    from shared.run.channels import ChannelRecord, Watcher, maintain

    try:
        dest = open_storage(pipeline.output.url)
        record = ChannelRecord.load(dest, pipeline.name)
        silent = _silent(dest, pipeline.name, result, record, clock())
        watcher = Watcher(pipeline, dest, drive=_drive(), clock=clock)
        outcome = maintain(watcher, silent=silent).to_dict()
    except (ConfigError, DriveError, StorageError, RetryableError) as exc:
        log.error("channel upkeep failed", extra={"pipeline": pipeline.name, "error": str(exc)})
        return {"action": "error", "reason": str(exc)}
    if outcome["action"] not in ("kept", "busy"):
        log.info("channel upkeep", extra=outcome)
    return outcome


def _silent(
    dest: Storage, pipeline: str, result: dict[str, Any] | None, record: ChannelRecord, now: float
) -> bool:
    """The reconcile found changes, yet neither a notification nor a new channel came lately."""
    counts = ((result or {}).get("summary") or {}).get("counts") or {}
    if record.current is None or not any(counts.get(status) for status in CHANGED):
        return False
    window = runtime_settings().push_silent_minutes * 60
    request = pending.requested(dest, pipeline)
    last = max(record.current.opened_at, request.at if request else 0.0)
    return now - last > window


def _drive() -> Any:
    from shared.drive import DriveClient
    from shared.secrets import load_into_env

    load_into_env()  # DRIVE_SECRET_ARN on Lambda; a no-op elsewhere
    return DriveClient.from_env()
