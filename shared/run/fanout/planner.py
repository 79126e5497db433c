"""The planner: list the folder, compare with the state, write the plan, enqueue work items.

Plans with the sync engine (:func:`shared.run.engine.plan`), so skipped and unchanged files are
decided exactly as in an inline run; only the files to fetch become work items, ``batch_size``
files per item. A plan too small to fan out is run inline as it is (listed once).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from shared.log import get_logger
from shared.run.engine import (
    Progress,
    SyncContext,
    SyncPlan,
    apply_mirror,
    open_sync,
    plan,
    state_key,
)
from shared.run.fanout.items import ItemResult, PlannedFile, WorkItem, item_id
from shared.run.fanout.runs import maybe_finalize, run_lease
from shared.run.manifest import InputRecord, RunManifest, input_record
from shared.run.mirror import plan_section
from shared.run.pending import Cover
from shared.run.sync import run_planned, run_sync
from shared.run.tables.register import table_section
from shared.storage.layout import plan_key, result_key, run_key

if TYPE_CHECKING:
    from shared.drive import DriveClient
    from shared.run.engine import SyncRequest
    from shared.run.fanout.options import FanoutOptions
    from shared.run.fanout.queues import WorkQueue

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
    request: SyncRequest,
    queue: WorkQueue,
    *,
    drive: DriveClient | None = None,
    progress: Progress | None = None,
) -> FanoutStarted | RunManifest:
    """Plan the sync, then enqueue it, or run it inline when it is smaller than ``min_files``.

    Drive is listed once either way, and the pipeline's sync lease is held throughout: taken
    for the fanned-out run (its finalizer releases it), and handed to the inline run as is.
    """
    options = request.pipeline.fanout
    if options is None or request.dry_run:
        return run_sync(request, drive=drive, progress=progress)
    if drive is None:
        from shared.run.fanout.worker import drive_client

        drive = drive_client()
    # One sync of a pipeline at a time, inline or fanned out: the run holds the pipeline's
    # sync lease from here until its finalizer releases it (LeaseHeld -> HTTP 409).
    lease_for = partial(run_lease, ttl=options.lease_seconds)
    # The listing keeps to the pipeline's bound on requests in flight, as an inline sync's does.
    drive = drive.limited(request.pipeline.concurrency)
    ctx = open_sync(request, drive=drive, lease_for=lease_for, renew=False)
    cover = Cover(ctx)  # push notifications this run covers, if it runs inline
    try:
        planned = plan(ctx)
        if len(planned.to_fetch) >= options.min_files:
            return _enqueue(ctx, planned, queue, options)
    except BaseException:
        ctx.release()
        raise
    try:  # small: run inline on this plan, under this lease, held as an inline run holds it
        ctx.hold_inline()
        manifest = run_planned(ctx, planned, progress=progress)
        cover.settle()
        return manifest
    finally:
        ctx.release()
        cover.follow_up()


def _enqueue(
    ctx: SyncContext, planned: SyncPlan, queue: WorkQueue, options: FanoutOptions
) -> FanoutStarted:
    """Write the plan, send the work items, and say where to watch the run."""
    pipeline, manifest = ctx.request.pipeline, planned.manifest
    state, request, dest = ctx.state, ctx.request, ctx.dest
    # Moves are copied now; the finalizer edits the state, saves it, then deletes old keys.
    changes = apply_mirror(ctx, planned)
    to_fetch = changes.fetch + planned.to_fetch
    size = options.batch_size
    items = [
        WorkItem(
            run_id=manifest.run_id,
            item_id=item_id(n // size),
            pipeline=pipeline.name,
            destination=pipeline.output.url,
            files=tuple(
                PlannedFile(f, fmt, record.output_path, record.renamed, _plan_failure(record))
                for f, fmt, record in to_fetch[n : n + size]
            ),
            items_total=-(-len(to_fetch) // size),
        )
        for n in range(0, len(to_fetch), size)
    ]
    body = {
        "version": 1,
        "run_id": manifest.run_id,
        "pipeline": pipeline.name,
        "trigger": request.trigger,
        "source": manifest.source,
        "destination": pipeline.output.url,
        "definition": state.definition,
        "started_at": manifest.started_at,
        "batch_size": size,
        "finalize_seconds": options.finalize_seconds,
        "queue": queue.name,
        "item_ids": [item.item_id for item in items],
        "inputs": [asdict(record) for record in manifest.inputs],
        "notes": list(manifest.notes),
        "removals_blocked": manifest.removals_blocked,
        # who the finalizer tells about the run (it has no pipeline object)
        "notify": pipeline.notify.model_dump(mode="json") if pipeline.notify else None,
        "mirror": plan_section(changes.forget, changes.record, changes.delete),
        "feed": planned.feed,
        "tables": table_section(pipeline),  # what the finalizer registers (catalogs)
        # What the state said each file to fetch produced: the finalizer deletes what an input
        # no longer produces against this snapshot, so a re-run after a crash still can.
        "previous_outputs": {
            key: list(state.inputs[key].output_keys)
            for key in (state_key(file) for file, _, _ in to_fetch)
            if key in state.inputs and state.inputs[key].output_keys
        },
    }
    dest.write(
        plan_key(manifest.run_id), json.dumps(body).encode(), content_type="application/json"
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


def _plan_failure(record: InputRecord) -> str | None:
    """Why the plan failed an input to fetch (an output key clash), else ``None``."""
    return record.error if record.status == "failed" else None
