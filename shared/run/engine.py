"""The one sync engine: the steps every Drive folder sync runs, inline or fanned out.

1. :func:`open_sync`: the preamble. The folder to sync, a Drive client, the destination, a run
   id, the pipeline's sync lease (not for a dry run) and the state read under it.
2. :func:`plan`: list the folder once and decide each file's fate (unsupported, unchanged,
   failed before and unchanged, or to fetch), in a manifest.
3. :func:`fetch_and_process`: fetch the files to fetch in parallel and process each as it
   arrives, yielding what became of it and the state entry to record (``None``: forget it).
   Each input is processed under an attempt marker (:mod:`shared.run.attempts`): one that
   K invocations in a row died on is quarantined instead of processed again.

:func:`shared.run.sync.run_planned` applies those results to the state inline, saving it at
checkpoints; a fan-out worker (:mod:`shared.run.fanout.worker`) collects them into its item
result instead, and the finalizer merges them.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple

from shared.errors import ConfigError, DriveError, StorageError
from shared.log import get_logger
from shared.run import feed, mirror
from shared.run.attempts import Attempts, crash_reason
from shared.run.lease import Lease
from shared.run.manifest import InputRecord, RunManifest, input_record, new_run_id, utc_now
from shared.run.mirror import MirrorPlan, state_key
from shared.run.ownership import claim_outputs
from shared.run.state import InputState, SyncState, definition_hash
from shared.settings import runtime_settings
from shared.storage import layout, open_storage

if TYPE_CHECKING:
    from shared.config import Pipeline
    from shared.drive import DriveClient, DriveFile
    from shared.storage import Storage

log = get_logger("pipeline")
LeaseFor = Callable[["Storage", str, str], Lease]  # (destination, pipeline, run id) -> lease
Progress = Callable[[InputRecord, int, int], None]  # (record, inputs done, inputs listed)


@dataclass(frozen=True)
class SyncRequest:
    """A Drive folder sync, with the overrides the caller chose."""

    pipeline: Pipeline
    trigger: str = "cli"
    folder_id: str | None = None
    since: datetime | None = None
    full_refresh: bool = False
    dry_run: bool = False
    # Apply removals even past the pipeline's removal guard (mirror.max_removed...).
    force_removals: bool = False
    # Why this run lists less than the pipeline's folder (the CLI's --include / --exclude on a
    # configured pipeline): like a since run, it computes no removals and keeps no feed position.
    listing_narrowed: str | None = None
    # Save the state after this many processed inputs and/or seconds (None: the runtime
    # settings, DRIVEPIPE_CHECKPOINT_EVERY / DRIVEPIPE_CHECKPOINT_SECONDS, else every 10 s).
    checkpoint_every: int | None = None
    checkpoint_seconds: float | None = None
    # Wait this long for another sync of the pipeline to finish before refusing (LeaseHeld).
    lock_wait_seconds: float = 0.0

    @property
    def source_folder(self) -> str:
        """The folder to sync: the request's ``folder_id``, else the pipeline's."""
        folder = self.folder_id or self.pipeline.source.folder_id
        if not folder:
            raise ConfigError(f"pipelines.{self.pipeline.name}.source.folder_id is not set")
        return folder


class Planned(NamedTuple):
    """One file to fetch, the reader format chosen for it, and its manifest record."""

    file: DriveFile
    format: str
    record: InputRecord


class Processed(NamedTuple):
    """What became of one fetched file; ``state`` is ``None`` when it is to be tried again."""

    file: DriveFile
    record: InputRecord
    state: InputState | None

    @property
    def key(self) -> str:
        """The file's state entry."""
        return state_key(self.file)


class Relocation(NamedTuple):
    """An unchanged file at a new path: its outputs move storage-side (no download)."""

    move: mirror.Move
    planned: Planned


@dataclass
class SyncPlan:
    """A listed folder: every input's record in ``manifest``, and the files to fetch.

    The mirror part: ``relocations`` (unchanged moved files), ``superseded`` (state keys of
    previous entries whose outputs go, e.g. a moved file that is fetched again) and
    ``removals`` (previous entries gone from the folder, applied unless ``blocked``).
    """

    manifest: RunManifest
    to_fetch: list[Planned]
    relocations: list[Relocation] = field(default_factory=list)
    superseded: list[str] = field(default_factory=list)
    removals: list[tuple[mirror.Removal, InputRecord]] = field(default_factory=list)
    removals_blocked: str | None = None
    # The changes-feed position to store if the run ends clean (shared.run.feed).
    feed: dict[str, Any] | None = None


@dataclass
class MirrorChanges:
    """A plan's mirror part once applied to storage: the state edits, the keys to delete
    once the edited state is saved, and the moved files to fetch after all."""

    forget: list[str] = field(default_factory=list)
    record: dict[str, InputState] = field(default_factory=dict)
    delete: set[str] = field(default_factory=set)
    fetch: list[Planned] = field(default_factory=list)


@dataclass
class SyncContext:
    """What a sync works with once :func:`open_sync` has run its preamble."""

    request: SyncRequest
    folder: str  # the Drive folder to list
    drive: DriveClient
    dest: Storage
    run_id: str
    state: SyncState
    lease: Lease | None  # None for a dry run

    def hold_inline(self) -> None:
        """Hold the lease as an inline sync does: its TTL, renewed in the background."""
        if self.lease is None:
            return
        ttl = runtime_settings().lease_seconds
        if self.lease.ttl != ttl:  # taken with a fanned-out run's TTL
            self.lease.ttl = ttl
            self.lease.renew()  # LeaseLost if another sync took over meanwhile
        self.lease.start_renewing()

    def release(self) -> None:
        """Release the lease (idempotent)."""
        if self.lease is not None:
            self.lease.release()


def input_format(file: DriveFile, pipeline: Pipeline) -> str | None:
    """The reader format for a Drive file, or ``None`` when the pipeline does not take it."""
    from shared.transform.readers import detect_format

    formats = pipeline.source.formats
    if file.is_sheet:
        return pipeline.read.sheets_export if "gsheet" in formats else None
    fmt = detect_format(file.name, file.mime_type)
    return fmt if fmt in formats else None


def open_store(url: str, role: str) -> Storage:
    """Open ``url``; a failure says which store (``destination``, ``source``) is unreachable."""
    try:
        return open_storage(url)
    except StorageError as exc:
        raise StorageError(f"{role} {url} is not reachable: {exc}") from exc


def sync_lease(
    dest: Storage,
    pipeline: str,
    run_id: str | None = None,
    *,
    ttl: float | None = None,
    holder: str | None = None,
) -> Lease:
    """The lease that lets one sync of ``pipeline`` at a time write to ``dest``.

    Inline syncs hold it while they run; a fanned-out run holds it (as ``holder``, with a long
    ``ttl``) from planning until its finalizer releases it.
    """
    ttl = ttl or runtime_settings().lease_seconds
    return Lease(dest, layout.sync_lock(pipeline), ttl=ttl, holder=holder, run_id=run_id)


def open_sync(
    request: SyncRequest,
    *,
    drive: DriveClient | None = None,
    lease_for: LeaseFor = sync_lease,
    renew: bool = True,
) -> SyncContext:
    """The preamble: take the pipeline's sync lease (``lease_for``) and read its state.

    ``renew`` holds the lease as an inline sync does from the start. A dry run takes no lease.
    The caller releases the lease (:meth:`SyncContext.release`) when it is done with it.
    """
    pipeline = request.pipeline
    folder = request.source_folder  # ConfigError before any connection
    if drive is None:
        from shared.drive import DriveClient
        from shared.secrets import load_into_env

        load_into_env()  # DRIVE_SECRET_ARN on Lambda; a no-op elsewhere
        drive = DriveClient.from_env()
    dest = open_store(pipeline.output.url, "destination")
    run_id = new_run_id()
    lease = None
    if not request.dry_run:
        lease = lease_for(dest, pipeline.name, run_id)
        try:
            lease.acquire(wait=request.lock_wait_seconds)
        except StorageError as exc:
            raise StorageError(f"cannot take the sync lease in {dest.base_url}: {exc}") from exc
    try:
        if lease is not None and renew:
            lease.start_renewing()
        state = _load_state(dest, pipeline)
    except BaseException:
        if lease is not None:
            lease.release()
        raise
    return SyncContext(request, folder, drive, dest, run_id, state, lease)


def _load_state(dest: Storage, pipeline: Pipeline) -> SyncState:
    try:
        return SyncState.load(dest, pipeline.name, definition_hash(pipeline))
    except StorageError as exc:
        raise StorageError(f"cannot read state from {dest.base_url}: {exc}") from exc


def plan(ctx: SyncContext) -> SyncPlan:
    """List the folder once and decide each file's fate; the manifest holds every input."""
    request, pipeline, state = ctx.request, ctx.request.pipeline, ctx.state
    source = pipeline.source
    manifest = RunManifest(
        run_id=ctx.run_id,
        pipeline=pipeline.name,
        trigger=request.trigger,
        source=f"drive:{ctx.folder}",
        destination=pipeline.output.url,
        dry_run=request.dry_run,
    )
    to_fetch: list[Planned] = []
    since = request.since or source.modified_since
    checked = feed.check(ctx.drive, state, ctx.folder, source, walk_forced=_walk_forced(ctx))
    if checked and checked.note:
        manifest.notes.append(checked.note)
    if checked and checked.unchanged:
        return _unchanged(ctx, manifest, feed.kept_position(checked, state))
    folders: dict[str, str] = {}
    if checked and checked.changes:  # the feed's changes, placed without a walk
        files = checked.changes.listed
        touched = checked.changes.touched
        _unchanged(ctx, manifest, None, skip=touched)
        touched_state = {k: e for k, e in state.inputs.items() if mirror.key_id(k) in touched}
        matched = mirror.reconcile(touched_state, files)
        reasons = checked.changes.reasons
        matched.removals = [
            mirror.Removal(r.old_key, r.previous, reasons.get(r.source_id, r.reason))
            for r in matched.removals
        ]
    else:
        # The whole listing first: a walk that fails part-way raises here, before any removal.
        files = list(
            ctx.drive.walk(
                ctx.folder,
                include=source.include,
                exclude=source.exclude,
                modified_since=since,
                drive_id=source.drive_id,
                folders=folders,
            )
        )
        matched = _reconcile(ctx, files, manifest)
    relocations: list[Relocation] = []
    superseded: list[str] = []
    for file in files:
        record = input_record(file)
        manifest.inputs.append(record)
        fmt = input_format(file, pipeline)
        move = matched.moves.get(file)
        key = move.old_key if move else state_key(file)
        if move:
            record.previous_path = move.previous.path
        if file.skip_reason or fmt is None:
            record.status = "skipped_unsupported"
            record.error = (
                file.skip_reason or f"format not taken by this pipeline ({file.mime_type})"
            )
            if move:
                superseded.append(move.old_key)
        elif not request.full_refresh and state.is_unchanged(
            key, md5=file.md5, modified_time=file.modified_time, size=file.size
        ):
            previous = state.inputs[key]
            if move and not previous.error and mirror.planned_keys(move) is not None:
                record.status = "moved"
                record.output_keys = list(previous.output_keys)  # the old keys, until moved
                relocations.append(Relocation(move, Planned(file, fmt, record)))
            elif move:  # failed before, or outputs of an unknown shape: fetch it again
                superseded.append(move.old_key)
                to_fetch.append(Planned(file, fmt, record))
            elif previous.error:  # bad content, unchanged: report it again, don't re-quarantine
                record.status = "failed"
                record.error = (
                    f"unchanged since it failed in run {previous.run_id}: {previous.error}"
                )
                record.quarantine_key = previous.quarantine_key
            else:
                record.status = "skipped_unchanged"
                record.output_keys = list(previous.output_keys)
        else:
            if move:
                superseded.append(move.old_key)
            to_fetch.append(Planned(file, fmt, record))
    to_fetch = claim_outputs(pipeline, state, to_fetch, state_key)  # every output key has one owner
    removals = _plan_removals(ctx, matched, manifest)
    log.info(
        "planned sync",
        extra={
            "pipeline": pipeline.name,
            "run_id": ctx.run_id,
            "inputs": len(manifest.inputs),
            "to_fetch": len(to_fetch),
            "moved": len(relocations),
            "removed": len(removals),
        },
    )
    position = None
    if checked and checked.changes:
        position = feed.kept_position(checked, state)
    elif checked and not since and not ctx.request.listing_narrowed:
        position = feed.position(checked, ctx.folder, folders)
    return SyncPlan(
        manifest, to_fetch, relocations, superseded, removals, manifest.removals_blocked, position
    )


def _walk_forced(ctx: SyncContext) -> str | None:
    """Why this run walks whatever the changes feed says, or ``None``."""
    request, source = ctx.request, ctx.request.pipeline.source
    if request.full_refresh:
        return "changes feed: full refresh; walked the folder"
    if request.since or source.modified_since:
        return "changes feed: a since run lists by modifiedTime; walked the folder"
    if request.listing_narrowed:
        return f"changes feed: {request.listing_narrowed}; walked the folder"
    return None


def _unchanged(
    ctx: SyncContext,
    manifest: RunManifest,
    position: dict[str, Any] | None,
    *,
    skip: set[str] | frozenset[str] = frozenset(),
) -> SyncPlan:
    """The plan of a run the changes feed spared: every known input (but the ids in ``skip``,
    which the feed changed), as the state has it."""
    for key, entry in sorted(ctx.state.inputs.items(), key=lambda item: item[1].path):
        if mirror.key_id(key) in skip:
            continue
        record = InputRecord(
            source_id=mirror.key_id(key),
            path=entry.path,
            md5=entry.md5,
            size=entry.size,
            modified_time=entry.modified_time,
        )
        if entry.error:
            record.status = "failed"
            record.error = f"unchanged since it failed in run {entry.run_id}: {entry.error}"
            record.quarantine_key = entry.quarantine_key
        else:
            record.status = "skipped_unchanged"
            record.output_keys = list(entry.output_keys)
        manifest.inputs.append(record)
    return SyncPlan(manifest, [], feed=position)


def _reconcile(ctx: SyncContext, files: list[DriveFile], manifest: RunManifest) -> MirrorPlan:
    """The moves and removals of a complete listing (no removals from a partial one)."""
    request, source = ctx.request, ctx.request.pipeline.source
    if request.folder_id and source.folder_id and request.folder_id != source.folder_id:
        # Paths relative to another folder: neither moves nor removals mean anything.
        if ctx.state.inputs:
            manifest.notes.append(
                f"folder {request.folder_id} is not the pipeline's folder: nothing mirrored"
            )
        return MirrorPlan()
    matched = mirror.reconcile(ctx.state.inputs, files)
    partial = request.listing_narrowed
    if request.since or source.modified_since:
        partial = "listing limited by modifiedTime (since / modified_since)"
    if partial:
        if matched.removals:
            manifest.notes.append(f"{partial}: removals not computed")
        matched.removals = []
    return matched


def _plan_removals(
    ctx: SyncContext, matched: MirrorPlan, manifest: RunManifest
) -> list[tuple[mirror.Removal, InputRecord]]:
    """One manifest record per removal: ``removed``, ``removed_kept`` or ``removal_blocked``."""
    request, pipeline = ctx.request, ctx.request.pipeline
    blocked = mirror.guard(
        pipeline,
        len(matched.removals),
        len(ctx.state.inputs),
        forced=request.full_refresh or request.force_removals,
    )
    removals = matched.removals if blocked else mirror.explain(ctx.drive, matched.removals)
    planned = []
    for removal in removals:
        entry = removal.previous
        record = InputRecord(
            source_id=removal.source_id,
            path=entry.path,
            md5=entry.md5,
            size=entry.size,
            modified_time=entry.modified_time,
            reason=removal.reason,
        )
        if blocked:
            record.status = "removal_blocked"
            record.output_keys = list(entry.output_keys)
        elif pipeline.mirror.on_removed == "keep":
            record.status = "removed_kept"
            record.output_keys = list(entry.output_keys)
        else:
            record.status = "removed"
            record.deleted_keys = mirror.removed_keys(pipeline, entry)
        manifest.inputs.append(record)
        planned.append((removal, record))
    if blocked:
        manifest.removals_blocked = blocked
        manifest.notes.append(blocked)
        log.warning("removal guard", extra={"pipeline": pipeline.name, "reason": blocked})
    return planned


def apply_mirror(ctx: SyncContext, planned: SyncPlan) -> MirrorChanges:
    """Move the relocated files' outputs storage-side; say how the state changes and what
    to delete once it is saved. Writes no state and deletes nothing itself."""
    pipeline, state = ctx.request.pipeline, ctx.state
    changes = MirrorChanges()
    for key in planned.superseded:
        changes.forget.append(key)
        changes.delete.update(mirror.removed_keys(pipeline, state.inputs[key]))
    for move, item in planned.relocations:
        entry = mirror.relocate(pipeline, ctx.dest, move, item.record, ctx.run_id)
        old = mirror.removed_keys(pipeline, move.previous)
        changes.forget.append(move.old_key)
        if entry is None:  # could not move them: fetch the file at its new path
            item.record.status, item.record.output_keys = "planned", []
            changes.delete.update(old)
            changes.fetch.append(item)
            continue
        changes.record[state_key(move.file)] = entry
        keep = set(entry.output_keys)
        if pipeline.output.keep_raw:
            keep.add(mirror.layout.raw_key(move.file.path))
        item.record.deleted_keys = sorted(set(old) - keep)
        changes.delete.update(item.record.deleted_keys)
    if planned.removals_blocked is None:
        for removal, record in planned.removals:
            changes.forget.append(removal.old_key)
            if record.status == "removed":
                changes.delete.update(record.deleted_keys)
    return changes


def stale_outputs(previous: Iterable[str], entry: InputState) -> set[str]:
    """The outputs an input produced before and no longer does (none when it failed now)."""
    return set() if entry.error else set(previous) - set(entry.output_keys)


def fetch_and_process(
    pipeline: Pipeline,
    dest: Storage,
    drive: DriveClient,
    planned: Sequence[Planned],
    run_id: str,
    *,
    previous: Mapping[str, InputState] | None = None,
) -> Generator[Processed, None, None]:
    """Fetch ``planned`` in parallel and process each file as it arrives, in arrival order.

    Downloads land in a per-call scratch directory (on Lambda, /tmp), one file per input, each
    removed once processed. With ``previous`` (the state an inline sync updates as it goes),
    outputs a written input no longer produces are deleted at once; a fanned-out run leaves
    that to its finalizer. Storage errors propagate: the destination, not the input, failed.
    Close the iterator (``contextlib.closing``) if you stop early.
    """
    from shared.run.process import process_input, quarantine

    attempts = Attempts(dest, pipeline.name, run_id, runtime_settings().poison_attempts)
    # Keyed by the whole DriveFile: a shortcut and its target share an id, not a path.
    by_file = {p.file: p for p in planned}
    with tempfile.TemporaryDirectory(prefix="drivepipe-") as scratch:

        def scratch_path(file: DriveFile) -> str:
            name = hashlib.sha1(f"{file.id}/{file.path}".encode()).hexdigest()
            return os.path.join(scratch, name)

        def open_dest(file: DriveFile) -> BinaryIO:
            return open(scratch_path(file), "w+b")

        fetched = drive.fetch_many(
            list(by_file),
            open_dest,
            concurrency=max(1, min(pipeline.concurrency, len(by_file))),
            sheet_format=pipeline.read.sheets_export,
        )
        for file, result in fetched:
            _, fmt, record = by_file[file]
            path = scratch_path(file)
            if isinstance(result, DriveError):  # not the content's fault: retry next run
                record.status, record.error = "failed", f"download failed: {result}"
                entry = None
            else:
                key = state_key(file)
                before = previous.get(key) if previous is not None else None
                crashes = attempts.begin(key, file)  # a marker while it is processed
                with open(path, "rb") as data:
                    if crashes >= attempts.limit:  # a poison pill: never processed again
                        quarantine(dest, data, record, run_id, crash_reason(crashes))
                    else:
                        try:
                            process_input(pipeline, dest, data, fmt, record, run_id)
                        except Exception:  # the run's error, not a crash on this input
                            attempts.abandon(key)
                            raise
                entry = _entry(file, record, run_id)
                _report(file, record)
                stale = stale_outputs(before.output_keys if before else (), entry)
                if stale and previous is not None:  # never one another entry still claims
                    stale -= _claimed_by_others(previous, key)
                for stale_key in sorted(stale):
                    dest.delete(stale_key)
                attempts.done(key)  # its outcome is known: no crash to count
            if os.path.exists(path):
                os.remove(path)
            yield Processed(file, record, entry)


def _claimed_by_others(entries: Mapping[str, InputState], owner: str) -> set[str]:
    return {k for key, entry in entries.items() if key != owner for k in entry.output_keys}


def _entry(file: DriveFile, record: InputRecord, run_id: str) -> InputState:
    return InputState(
        md5=file.md5,
        modified_time=file.modified_time,
        size=file.size,
        path=file.path,
        output_keys=list(record.output_keys),
        run_id=run_id,
        error=record.error,
        quarantine_key=record.quarantine_key,
        output_path=record.output_path,
    )


def _report(file: DriveFile, record: InputRecord) -> None:
    if record.status != "written":
        log.warning(
            "input failed",
            extra={
                "path": file.path,
                "error": record.error,
                "quarantine_key": record.quarantine_key,
            },
        )


def save_manifest(dest: Storage, manifest: RunManifest) -> None:
    """Stamp the manifest's end and write it (a dry run writes nothing)."""
    manifest.ended_at = utc_now()
    if not manifest.dry_run:
        dest.write(
            layout.run_key(manifest.run_id), manifest.to_json(), content_type="application/json"
        )
