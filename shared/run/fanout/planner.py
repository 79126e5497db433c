"""The planner: list the folder, compare with the state, write the plan, enqueue work items.

Reuses :func:`shared.run.sync.plan_sync`, so skipped and unchanged files are decided exactly as
in an inline run; only the files to fetch become work items, ``batch_size`` files per item.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from shared.errors import ConfigError, RetryableError, StorageError
from shared.log import get_logger
from shared.run.fanout.items import ItemResult, PlannedFile, WorkItem, item_id
from shared.run.fanout.runs import maybe_finalize, run_lease
from shared.run.manifest import RunManifest, input_record, new_run_id
from shared.run.state import SyncState, definition_hash
from shared.storage import open_storage
from shared.storage.layout import plan_key, result_key, run_key

if TYPE_CHECKING:
    from shared.drive import DriveClient
    from shared.run.fanout.queues import WorkQueue
    from shared.run.sync import SyncRequest

log = get_logger("fanout")


@dataclass(frozen=True)
class FanoutStarted:
    """A sync handed to workers: where to watch it."""

    run_id: str
    pipeline: str
    trigger: str
    destination: str
    started_at: str
    items: int
    files_to_process: int
    files_listed: int
    unsent_items: int

    def summary(self) -> dict[str, Any]:
        """What ``POST /sync`` answers with its 202 (and schedule handlers log)."""
        return {
            "run_id": self.run_id,
            "pipeline": self.pipeline,
            "trigger": self.trigger,
            "status": "accepted",
            "started_at": self.started_at,
            "destination": self.destination,
            "progress": f"/runs/{self.run_id}",
            "manifest": f"{self.destination.rstrip('/')}/{run_key(self.run_id)}",
            "items": self.items,
            "files_to_process": self.files_to_process,
            "files_listed": self.files_listed,
            "unsent_items": self.unsent_items,
        }


def start_fanout(
    request: SyncRequest, queue: WorkQueue, *, drive: DriveClient | None = None
) -> FanoutStarted | None:
    """Plan and enqueue the sync; ``None`` when it is small enough to run inline."""

    pipeline, options = request.pipeline, request.pipeline.fanout
    if options is None or request.dry_run:
        return None
    folder_id = request.folder_id or pipeline.source.folder_id
    if not folder_id:
        raise ConfigError(f"pipelines.{pipeline.name}.source.folder_id is not set")
    if drive is None:
        from shared.run.fanout.worker import drive_client

        drive = drive_client()
    try:
        dest = open_storage(pipeline.output.url)
    except StorageError as exc:
        raise RetryableError(f"cannot open {pipeline.output.url}: {exc}") from exc
    run_id = new_run_id()
    # One sync of a pipeline at a time, inline or fanned out: the run holds the pipeline's
    # sync lease from here until its finalizer releases it (LeaseHeld -> HTTP 409).
    lease = run_lease(dest, pipeline.name, run_id, options.lease_seconds)
    try:
        lease.acquire(wait=request.lock_wait_seconds)
    except StorageError as exc:
        raise RetryableError(f"cannot take the sync lease in {dest.base_url}: {exc}") from exc
    try:
        started = _plan_and_enqueue(request, queue, drive, dest, run_id, folder_id)
    except BaseException:
        lease.release()
        raise
    if started is None:  # small enough to run inline: run_sync takes the lease itself
        lease.release()
    return started


def _plan_and_enqueue(
    request: SyncRequest,
    queue: WorkQueue,
    drive: DriveClient,
    dest: Any,
    run_id: str,
    folder_id: str,
) -> FanoutStarted | None:
    from shared.run.sync import plan_sync, state_key

    pipeline, options = request.pipeline, request.pipeline.fanout
    assert options is not None
    try:
        definition = definition_hash(pipeline)
        state = SyncState.load(dest, pipeline.name, definition)
    except StorageError as exc:
        raise RetryableError(f"cannot read state from {pipeline.output.url}: {exc}") from exc
    manifest = RunManifest(
        run_id=run_id,
        pipeline=pipeline.name,
        trigger=request.trigger,
        source=f"drive:{folder_id}",
        destination=pipeline.output.url,
    )
    to_fetch = plan_sync(request, drive, state, manifest)
    if len(to_fetch) < options.min_files:
        return None
    size = options.batch_size
    items = [
        WorkItem(
            run_id=manifest.run_id,
            item_id=item_id(n // size),
            pipeline=pipeline.name,
            destination=pipeline.output.url,
            files=tuple(PlannedFile(f, fmt) for f, fmt, _ in to_fetch[n : n + size]),
            items_total=-(-len(to_fetch) // size),
        )
        for n in range(0, len(to_fetch), size)
    ]
    plan = {
        "version": 1,
        "run_id": manifest.run_id,
        "pipeline": pipeline.name,
        "trigger": request.trigger,
        "source": manifest.source,
        "destination": pipeline.output.url,
        "definition": definition,
        "started_at": manifest.started_at,
        "batch_size": size,
        "finalize_seconds": options.finalize_seconds,
        "queue": queue.name,
        "item_ids": [item.item_id for item in items],
        "inputs": [asdict(record) for record in manifest.inputs],
        # What the state said each file to fetch produced: the finalizer deletes what an input
        # no longer produces against this snapshot, so a re-run after a crash still can.
        "previous_outputs": {
            key: list(state.inputs[key].output_keys)
            for key in (state_key(file) for file, _, _ in to_fetch)
            if key in state.inputs and state.inputs[key].output_keys
        },
    }
    dest.write(
        plan_key(manifest.run_id), json.dumps(plan).encode(), content_type="application/json"
    )
    unsent = queue.send_batch(items)
    for item in unsent:  # record them now, so the run still completes and says why
        _record_unsent(dest, item, queue.name)
    if unsent:
        maybe_finalize(dest, manifest.run_id)
    log.info(
        "fanned out sync",
        extra={
            "run_id": manifest.run_id,
            "pipeline": pipeline.name,
            "items": len(items),
            "files": len(to_fetch),
            "unsent": len(unsent),
        },
    )
    return FanoutStarted(
        run_id=manifest.run_id,
        pipeline=pipeline.name,
        trigger=request.trigger,
        destination=pipeline.output.url,
        started_at=manifest.started_at,
        items=len(items),
        files_to_process=len(to_fetch),
        files_listed=len(manifest.inputs),
        unsent_items=len(unsent),
    )


def _record_unsent(dest: Any, item: WorkItem, queue: str) -> None:
    reason = f"could not be enqueued on {queue}; the next run tries again"
    records = []
    for planned in item.files:
        record = input_record(planned.file)
        record.status, record.error = "failed", reason
        records.append(record)
    result = ItemResult(item.run_id, item.item_id, "failed", records, {}, 0, reason)
    dest.create_if_absent(result_key(item.run_id, item.item_id), result.to_json())
