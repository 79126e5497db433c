"""Planning a sync: list the folder once and decide each file's fate, in a manifest.

Each file is unsupported, unchanged, failed before and unchanged, moved (its outputs are moved
storage-side), or to fetch; previous entries gone from the folder become removals, unless the
mirror's removal guard blocks them. :func:`apply_mirror` turns a plan's mirror part into state
edits and the keys to delete once the edited state is saved.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from shared.log import get_logger
from shared.run import feed, mirror
from shared.run.manifest import InputRecord, RunManifest, input_record
from shared.run.mirror import MirrorPlan, state_key
from shared.run.ownership import claim_outputs
from shared.run.state import InputState
from shared.run.tables.migrate import in_layout

if TYPE_CHECKING:
    from shared.config import Pipeline
    from shared.drive import DriveFile
    from shared.run.context import SyncContext

log = get_logger("pipeline")


class Planned(NamedTuple):
    """One file to fetch, the reader format chosen for it, and its manifest record."""

    file: DriveFile
    format: str
    record: InputRecord


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


def input_format(file: DriveFile, pipeline: Pipeline) -> str | None:
    """The reader format for a Drive file, or ``None`` when the pipeline does not take it."""
    from shared.transform.readers import detect_format

    formats = pipeline.source.formats
    if file.is_sheet:
        return pipeline.read.sheets_export if "gsheet" in formats else None
    fmt = detect_format(file.name, file.mime_type)
    return fmt if fmt in formats else None


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
    if request.scope_note:
        manifest.notes.append(request.scope_note)
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
        elif (
            not request.full_refresh
            and state.is_unchanged(
                key, md5=file.md5, modified_time=file.modified_time, size=file.size
            )
            and in_layout(pipeline, state.inputs[key])  # else re-keyed: fetched again
        ):
            previous = state.inputs[key]
            table = pipeline.output.layout == "table"
            if move and not previous.error and mirror.planned_keys(move, table=table) is not None:
                record.status = "moved"
                record.output_keys = list(previous.output_keys)  # the old keys, until moved
                relocations.append(Relocation(move, Planned(file, fmt, record)))
            elif move:  # failed before, or outputs of an unknown shape: fetch it again
                superseded.append(move.old_key)
                to_fetch.append(Planned(file, fmt, record))
            elif previous.error and previous.recheck:  # an export that failed: read it again
                record.reason = f"failed in run {previous.run_id} on an unverifiable read; retried"
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
    pipeline = request.pipeline
    if not all(in_layout(pipeline, entry) for entry in ctx.state.inputs.values()):
        return f"changes feed: outputs to move to output.layout = {pipeline.output.layout!r}"
    if any(entry.recheck for entry in ctx.state.inputs.values()):
        return "changes feed: an export that failed is read again; walked the folder"
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
        forced=request.force_removals,  # full_refresh re-reads all; it removes no more
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
