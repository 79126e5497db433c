"""The inline sync: plan the folder, then fetch, process and record every file in this process.

``run_sync`` runs the engine's steps (:mod:`shared.run.engine`) under the pipeline's sync
lease, applying each file's outcome to the state and saving it at checkpoints, so a crash
loses at most the work since the last one. Its downloads start while the folder is still
listed (:mod:`shared.run.prefetch`); nothing is written before the listing is complete. A
fan-out planner that finds a folder too small to fan out hands its plan to
:func:`run_planned` instead, so the folder is listed once.
"""

from __future__ import annotations

import logging
import time
from contextlib import closing
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shared.crashpoints import crash_point
from shared.log import get_logger
from shared.run.engine import (
    Progress,
    SyncContext,
    SyncPlan,
    SyncRequest,
    apply_mirror,
    fetch_and_process,
    open_sync,
    plan,
    save_manifest,
    stale_outputs,
)
from shared.run.finish import finish_run
from shared.run.mirror import delete_unclaimed
from shared.run.pending import Cover
from shared.run.prefetch import Downloads, fetch_predictor
from shared.run.tables.register import register_pipeline
from shared.settings import runtime_settings

if TYPE_CHECKING:
    from shared.drive import DriveClient
    from shared.run.engine import Planned
    from shared.run.manifest import RunManifest
    from shared.run.state import InputState, SyncState

__all__ = ["Checkpoints", "Progress", "SyncRequest", "run_planned", "run_sync"]
log = get_logger("pipeline")


@dataclass(frozen=True)
class Checkpoints:
    """When ``run_sync`` saves its state: every ``every`` inputs or ``seconds``, whichever first."""

    every: int | None
    seconds: float

    @classmethod
    def for_request(cls, request: SyncRequest) -> Checkpoints:
        """The request's settings, else the runtime settings (default every 10 seconds)."""
        settings = runtime_settings()
        every = request.checkpoint_every
        if every is None:
            every = settings.checkpoint_every
        seconds = request.checkpoint_seconds
        if seconds is None:
            seconds = settings.checkpoint_seconds
        return cls(every, seconds)

    def due(self, since_save: int, last_save: float) -> bool:
        """True when a checkpoint is due after ``since_save`` inputs since ``last_save``."""
        if self.every is not None and since_save >= self.every:
            return True
        return time.monotonic() - last_save >= self.seconds


def run_sync(
    request: SyncRequest, *, drive: DriveClient | None = None, progress: Progress | None = None
) -> RunManifest:
    """Sync one pipeline's Drive folder into its destination and return the manifest.

    For a ``push`` pipeline it also settles the notifications it covered, and hands one more
    sync off if more came while it ran (:mod:`shared.run.pending`).

    Files the plan will certainly fetch are downloaded while the folder is still listed;
    everything is decided, and written, once the listing is complete.
    """
    ctx = open_sync(request, drive=drive)
    cover = Cover(ctx)  # before plan(), which reads the changes feed
    try:
        with Downloads.for_pipeline(ctx.drive, request.pipeline) as downloads:
            downloads.wanted = fetch_predictor(ctx)
            planned = plan(downloads.planning(ctx))
            manifest = run_planned(ctx, planned, progress=progress, downloads=downloads)
        cover.settle()
        return manifest
    finally:
        ctx.release()
        cover.follow_up()


def run_planned(
    ctx: SyncContext,
    planned: SyncPlan,
    *,
    progress: Progress | None = None,
    downloads: Downloads | None = None,
) -> RunManifest:
    """Fetch, process and record ``planned`` inline under ``ctx``'s lease (not released here).

    ``downloads``: the sync's downloads, some perhaps started while listing (by default, a
    new pool at the pipeline's concurrency). The state is saved at checkpoints and at the end,
    the manifest at the end, even when processing fails; a dry run only stamps its manifest.
    """
    manifest, request = planned.manifest, ctx.request
    if request.dry_run:
        save_manifest(ctx.dest, manifest)
        return manifest
    if downloads is None:
        with Downloads.for_pipeline(ctx.drive, request.pipeline) as own:
            return run_planned(ctx, planned, progress=progress, downloads=own)
    state, pipeline = ctx.state, request.pipeline
    try:
        _finish_deletes(ctx, state)  # what a run that died after its last save left to delete
        to_fetch = _mirror(ctx, planned) + planned.to_fetch
    except BaseException:
        _finish(ctx, manifest)
        raise
    total = len(manifest.inputs)
    done = total - len(to_fetch)
    checkpoints = Checkpoints.for_request(request)
    last_checkpoint, since_checkpoint = time.monotonic(), 0
    clean = planned.removals_blocked is None  # else the next run must walk to see them again
    results = fetch_and_process(
        pipeline,
        ctx.dest,
        downloads.drive,
        to_fetch,
        ctx.run_id,
        fetch=downloads.fetch_many,
        scratch=downloads.scratch,
    )
    try:
        with closing(results):
            for outcome in results:
                if outcome.state is None:
                    state.forget(outcome.key)
                    clean = False
                else:
                    _record(state, outcome.key, outcome.state)
                done += 1
                since_checkpoint += 1
                if progress:
                    progress(outcome.record, done, total)
                if checkpoints.due(since_checkpoint, last_checkpoint):
                    _save_state(ctx, state)  # only inputs whose outputs are durable
                    crash_point("state_saved")
                    _finish_deletes(ctx, state)
                    last_checkpoint, since_checkpoint = time.monotonic(), 0
        state.set_feed(planned.feed if clean else None)  # only after every input is recorded
        register_pipeline(pipeline, ctx.dest, manifest.catalog)  # Glue / BigQuery, if set
    finally:
        try:
            _save_state(ctx, state)
            crash_point("state_saved")
            _finish_deletes(ctx, state)
            _save_state(ctx, state)  # without the deletions just carried out (if any)
        finally:
            manifest.note_deferred()  # inputs the function's time ran out before
            crash_point("before_manifest")
            _finish(ctx, manifest)
    counts = manifest.counts()
    log.log(  # WARNING when inputs failed (quarantined, listed in the manifest): alertable
        logging.WARNING if counts.get("failed") else logging.INFO,
        "sync finished",
        extra={"pipeline": pipeline.name, "run_id": manifest.run_id, **counts},
    )
    return manifest


def _finish(ctx: SyncContext, manifest: RunManifest) -> None:
    """Write the manifest with the run's Drive usage, then notify, index and measure it."""
    manifest.drive = ctx.drive_usage()
    finish_run(ctx.dest, manifest, notify=ctx.request.pipeline.notify)


def _mirror(ctx: SyncContext, planned: SyncPlan) -> list[Planned]:
    """Apply the plan's moves and removals: outputs moved, the state saved without the old
    entries, then (only then) the old keys deleted. The moved files to fetch after all."""
    changes = apply_mirror(ctx, planned)
    if not (changes.forget or changes.record):
        return changes.fetch
    state = ctx.state
    for key in changes.forget:
        state.forget(key)
    for key, entry in changes.record.items():
        state.record(key, entry)
    state.schedule_deletes(changes.delete)
    _save_state(ctx, state)  # durable before any output is deleted
    crash_point("mirror_saved")
    deleted = set(_finish_deletes(ctx, state))
    for record in planned.manifest.inputs:
        if record.deleted_keys:
            record.deleted_keys = [k for k in record.deleted_keys if k in deleted]
    return changes.fetch


def _record(state: SyncState, key: str, entry: InputState) -> None:
    """Record an input's outcome; what it no longer produces is deleted after the next save.

    A new version that failed keeps claiming the outputs of the last good one: they stay in
    the destination (the last good table), so the state must name them, or a later removal
    of the input would leave them behind unclaimed.
    """
    before = state.inputs.get(key)
    if before is not None and entry.error and not entry.output_keys:
        entry.output_keys = list(before.output_keys)
    state.record(key, entry)
    if before is not None:
        state.schedule_deletes(stale_outputs(before.output_keys, entry))


def _save_state(ctx: SyncContext, state: SyncState) -> None:
    if ctx.lease is not None and state.dirty:
        ctx.lease.check()  # LeaseLost: another sync took over, its state wins
    state.save(ctx.dest)


def _finish_deletes(ctx: SyncContext, state: SyncState) -> list[str]:
    """Delete the keys the *saved* state schedules for deletion and no entry claims; the keys
    deleted. The stored state keeps them until its next save, so a crash in between means
    the next run deletes them (they are never left unclaimed and undeleted)."""
    pending = list(state.pending_deletes)
    if not pending or state.dirty:  # never ahead of a save: the stored state must agree
        return []
    deleted = delete_unclaimed(ctx.dest, pending, state.inputs)
    state.deletes_done(pending)
    return deleted
