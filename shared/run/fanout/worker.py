"""Process one work item: fetch its files, run each through the pipeline, record the result.

A result is created once (``create_if_absent``), so a duplicate delivery of a finished item is
a no-op. A crash (anything but a bad input, which is quarantined as in an inline run) is noted
under ``errors/`` and re-raised so the queue redelivers the item; on the last delivery the item
is recorded as failed first. Items that reach the dead-letter queue are recorded by
:func:`dead_letter` with the last noted error.
"""

from __future__ import annotations

import json
import os
from contextlib import closing
from typing import TYPE_CHECKING, Any, Literal

from shared.errors import ItemCrashed, StorageError, StorageNotFound
from shared.log import get_logger
from shared.run.engine import Planned, fetch_and_process, open_store, state_key
from shared.run.fanout.items import ItemResult, PlannedFile, WorkItem
from shared.run.fanout.runs import maybe_finalize
from shared.run.manifest import InputRecord, input_record, utc_now
from shared.run.prefetch import Downloads
from shared.storage.layout import error_key, plan_key, result_key

if TYPE_CHECKING:
    from shared.config import Pipeline
    from shared.drive import DriveClient, DriveFile
    from shared.storage import Storage

Outcome = Literal["done", "duplicate", "failed", "orphan"]
log = get_logger("fanout")
_drives: dict[tuple[str, ...], DriveClient] = {}
_DRIVE_ENV = (
    "DRIVE_API_URL",
    "DRIVE_API_KEY",
    "DRIVE_ACCESS_TOKEN",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "DRIVE_SERVICE_ACCOUNT_JSON",
)


def drive_client() -> DriveClient:
    """One Drive client per process and Drive settings (warm invocations reuse connections)."""
    from shared.drive import DriveClient
    from shared.secrets import load_into_env

    load_into_env()
    settings = tuple(os.environ.get(name, "") for name in _DRIVE_ENV)
    if settings not in _drives:
        _drives[settings] = DriveClient.from_env()
    return _drives[settings]


def _destination(item: WorkItem) -> Storage:
    return open_store(item.destination, "destination")


def handle_item(
    item: WorkItem,
    pipeline: Pipeline | None,
    *,
    attempt: int = 1,
    max_attempts: int | None = None,
    drive: DriveClient | None = None,
) -> Outcome:
    """Process ``item`` (delivery number ``attempt``) unless it already has a result."""
    dest = _destination(item)
    key = result_key(item.run_id, item.item_id)
    if dest.exists(key):
        # The first delivery may have died between its result and the finalizer.
        maybe_finalize(dest, item.run_id, item.items_total)
        return "duplicate"
    if not dest.exists(plan_key(item.run_id)):
        log.warning("work item without a plan", extra={"run_id": item.run_id})
        return "orphan"
    if pipeline is None:
        reason = f"pipeline {item.pipeline!r} is not in the deployed configuration"
        return _record_failure(dest, item, attempt, reason)
    try:
        records, states = _process_files(pipeline, dest, item, drive or drive_client())
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        reason = f"{type(exc).__name__}: {exc}"
        _note_error(dest, item, attempt, reason)
        if max_attempts is not None and attempt >= max_attempts:
            _record_failure(dest, item, attempt, f"gave up after {attempt} deliveries: {reason}")
        log.error("work item crashed", extra={"item": item.item_id, "attempt": attempt})
        raise ItemCrashed(f"item {item.item_id} of run {item.run_id}: {reason}") from exc
    result = ItemResult(item.run_id, item.item_id, "done", records, states, attempt)
    created = dest.create_if_absent(key, result.to_json())
    maybe_finalize(dest, item.run_id, item.items_total)
    return "done" if created else "duplicate"


def dead_letter(item: WorkItem, *, deliveries: int | None = None) -> Outcome:
    """A dead-lettered item: record it as failed with the last error a worker noted."""
    dest = _destination(item)
    if dest.exists(result_key(item.run_id, item.item_id)):
        maybe_finalize(dest, item.run_id, item.items_total)
        return "duplicate"
    try:
        last = json.loads(dest.read(error_key(item.run_id, item.item_id)))
        cause = f"last error (delivery {last['attempt']}): {last['error']}"
    except StorageNotFound:
        cause = "no error was recorded (timeout or out of memory?)"
    count = f" after {deliveries} deliveries" if deliveries else ""
    return _record_failure(dest, item, deliveries or 0, f"dead-lettered{count}; {cause}")


def _note_error(dest: Storage, item: WorkItem, attempt: int, reason: str) -> None:
    body = json.dumps({"attempt": attempt, "error": reason, "at": utc_now()}).encode()
    try:
        dest.write(error_key(item.run_id, item.item_id), body)
    except StorageError:
        log.warning("could not note a work item's error", extra={"item": item.item_id})


def _record_failure(dest: Storage, item: WorkItem, attempt: int, reason: str) -> Outcome:
    """Every file of the item failed with ``reason``; they are retried on the next run."""
    records = []
    for planned in item.files:
        record = _record(planned)
        record.status, record.error = "failed", reason
        records.append(record)
    states: dict[str, dict[str, Any] | None] = {state_key(p.file): None for p in item.files}
    result = ItemResult(item.run_id, item.item_id, "failed", records, states, attempt, reason)
    created = dest.create_if_absent(result_key(item.run_id, item.item_id), result.to_json())
    maybe_finalize(dest, item.run_id, item.items_total)
    return "failed" if created else "duplicate"


def _record(planned: PlannedFile) -> InputRecord:
    record = input_record(planned.file)
    record.output_path, record.renamed = planned.output_path, planned.renamed
    if planned.failed is not None:  # the plan's verdict: the engine only quarantines it
        record.status, record.error = "failed", planned.failed
    return record


def _process_files(
    pipeline: Pipeline, dest: Storage, item: WorkItem, drive: DriveClient
) -> tuple[list[InputRecord], dict[str, dict[str, Any] | None]]:
    """Run the item's files through the sync engine; the records and state entries it made."""
    planned = [Planned(p.file, p.format, _record(p)) for p in item.files]
    states: dict[str, dict[str, Any] | None] = {}
    done: set[DriveFile] = set()
    with Downloads.for_pipeline(drive, pipeline) as downloads:
        results = fetch_and_process(
            pipeline,
            dest,
            downloads.drive,
            planned,
            item.run_id,
            fetch=downloads.fetch_many,
            scratch=downloads.scratch,
        )
        with closing(results):
            for outcome in results:
                states[outcome.key] = vars(outcome.state) if outcome.state else None
                done.add(outcome.file)
    return [p.record for p in planned if p.file in done], states
