"""Mirror semantics: what a full walk means for every input the state knew before.

The state is keyed by ``"{id}:{path}"`` (a shortcut shares its target's id), so a Drive move or
rename, which keeps the id, shows up as an entry whose key is gone and a listed file whose key
is new. :func:`reconcile` pairs them by Drive id (only when exactly one previous entry and one
listed file carry that id; anything else stays a plain change) and names every previous entry
whose id is no longer listed as a removal.

The engine then, per pipeline (``on_removed``, ``max_removed``, ``max_removed_fraction``):

- moves an unchanged moved file's outputs storage-side to the keys its new path gives
  (:func:`relocate`), without downloading it again, and removes the old keys;
- reprocesses a moved file whose bytes changed, and removes its old outputs;
- deletes a removed input's outputs and ``_raw/`` copy (``on_removed = "delete"``), or keeps
  them and records ``removed_kept`` (``"keep"``);
- deletes nothing when the removals exceed the guard (:func:`guard`) unless the request forces
  it, and never computes removals from a partial listing (``since``/``modified_since``, or a
  folder other than the pipeline's).

Old keys are deleted only once a saved state no longer claims them (:func:`delete_unclaimed`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared.errors import DriveError, StorageNotFound
from shared.log import get_logger
from shared.run.manifest import InputRecord
from shared.run.state import InputState
from shared.storage import layout, safe_key

if TYPE_CHECKING:
    from shared.config import Pipeline
    from shared.drive import DriveClient, DriveFile
    from shared.storage import Storage

log = get_logger("mirror")
REASON_LOOKUPS = 100  # files.get calls per run to say why a removed input is gone


def state_key(file: DriveFile) -> str:
    """The state entry of a Drive file: its id and path (a shortcut shares its target's id)."""
    return f"{file.id}:{file.path}"


def key_id(key: str) -> str:
    """The Drive id in a state key (Drive ids never contain ``:``)."""
    return key.split(":", 1)[0]


@dataclass(frozen=True)
class Move:
    """A listed file whose only previous entry, under the same id, had another path."""

    file: DriveFile
    old_key: str
    previous: InputState


@dataclass(frozen=True)
class Removal:
    """A previous entry whose path is no longer listed, nor moved anywhere."""

    old_key: str
    previous: InputState
    reason: str = "not listed"

    @property
    def source_id(self) -> str:
        """The removed input's Drive id."""
        return key_id(self.old_key)


@dataclass
class MirrorPlan:
    """What a full walk means for the previous state: its moves and removals.

    ``blocked`` says why no removal is applied this run (guard, partial listing); the removals
    are still listed, so the manifest can show them.
    """

    moves: dict[DriveFile, Move] = field(default_factory=dict)
    removals: list[Removal] = field(default_factory=list)
    blocked: str | None = None


def reconcile(previous: Mapping[str, InputState], listed: Iterable[DriveFile]) -> MirrorPlan:
    """Pair the previous state with a complete listing: moves by Drive id, and removals."""
    files = list(listed)
    listed_keys = {state_key(f) for f in files}
    previous_by_id: dict[str, list[str]] = defaultdict(list)
    for key in previous:
        previous_by_id[key_id(key)].append(key)
    files_by_id: dict[str, list[DriveFile]] = defaultdict(list)
    for file in files:
        files_by_id[file.id].append(file)
    mirror = MirrorPlan()
    for key, entry in previous.items():
        if key in listed_keys:
            continue  # same id, same path: unchanged or changed, as before
        file_id = key_id(key)
        same_id = files_by_id.get(file_id, [])
        if len(same_id) == 1 and len(previous_by_id[file_id]) == 1:
            mirror.moves[same_id[0]] = Move(same_id[0], key, entry)
        elif same_id:  # a shortcut and its target, say: the listed paths are processed anew
            reason = "its path is gone; its Drive id is listed at other paths"
            mirror.removals.append(Removal(key, entry, reason))
        else:
            mirror.removals.append(Removal(key, entry))
    return mirror


def guard(pipeline: Pipeline, removals: int, known: int, *, forced: bool) -> str | None:
    """Why ``removals`` of ``known`` inputs must not be applied, or ``None`` when they may."""
    if forced or removals == 0:
        return None
    mirror = pipeline.mirror
    if mirror.max_removed is not None and removals > mirror.max_removed:
        return (
            f"removal guard: {removals} inputs gone from Drive, more than max_removed = "
            f"{mirror.max_removed}; nothing deleted (force_removals or full_refresh goes past it)"
        )
    fraction = mirror.max_removed_fraction
    if fraction is not None and known and removals > fraction * known:
        return (
            f"removal guard: {removals} of {known} known inputs gone from Drive, more than "
            f"max_removed_fraction = {fraction}; nothing deleted (force_removals or "
            "full_refresh goes past it)"
        )
    return None


def removal_reason(drive: DriveClient, file_id: str) -> str:
    """Why a file is no longer listed, from files.get (one request)."""
    try:
        item = drive.get_file(file_id, "id,trashed,parents")
    except DriveError as exc:
        if exc.status == 404:
            return "deleted (or no longer readable by these credentials)"
        return f"not listed (files.get: {exc})"
    if item.get("trashed"):
        return "trashed"
    return "moved out of the folder (or excluded by the pipeline's filters)"


def explain(drive: DriveClient, removals: Sequence[Removal]) -> list[Removal]:
    """The removals with the reason files.get gives, for the first :data:`REASON_LOOKUPS`."""
    explained = []
    for n, removal in enumerate(removals):
        if removal.reason == "not listed" and n < REASON_LOOKUPS:
            reason = removal_reason(drive, removal.source_id)
            removal = Removal(removal.old_key, removal.previous, reason)
        explained.append(removal)
    return explained


def relocated_key(key: str, old_path: str, new_path: str) -> str | None:
    """``key``, an output of ``old_path``, as ``new_path`` would have produced it.

    Output keys are ``[<name>=<value>/...]<stem>[/<sheet>]<ext>`` with the stem from the path
    (:func:`shared.storage.layout.output_key`); ``None`` when ``key`` has no such shape.
    """
    old_stem = safe_key(layout.strip_input_extension(old_path))
    new_stem = safe_key(layout.strip_input_extension(new_path))
    start = 0
    while True:
        if key.startswith(old_stem, start):
            rest = key[start + len(old_stem) :]
            if rest.startswith(("/", ".")) or rest == "":
                return safe_key(key[:start] + new_stem + rest)
        slash = key.find("/", start)
        if slash < 0 or "=" not in key[start:slash]:
            return None  # only partition directories may come before the stem
        start = slash + 1


def planned_keys(move: Move, *, table: bool = False) -> dict[str, str] | None:
    """Old output key → new output key for a move, or ``None`` if one cannot be mapped
    (``table``: outputs in the table layout, one flat file name per input)."""
    mapping = {}
    for key in move.previous.output_keys:
        if table:
            new = layout.relocated_table_key(key, move.previous.path, move.file.path)
        else:
            new = relocated_key(key, move.previous.path, move.file.path)
        if new is None:
            return None
        mapping[key] = new
    return mapping


def relocate(
    pipeline: Pipeline, dest: Storage, move: Move, record: InputRecord, run_id: str
) -> InputState | None:
    """Copy a moved file's outputs (and ``_raw/`` copy) to its new keys, storage-side.

    Returns the new state entry; ``None`` when an output could not be mapped or is missing,
    so the caller fetches the file instead. The old keys are left for :func:`delete_unclaimed`.
    """
    from shared.run.tables.moves import CannotMove, moved_output

    mapping = planned_keys(move, table=pipeline.output.layout == "table")
    if mapping is None:
        return None
    try:
        rewrite = moved_output(pipeline, move.file)  # a table's lineage names the new path
    except CannotMove:
        return None
    if pipeline.output.keep_raw:
        old_raw, new_raw = layout.raw_key(move.previous.path), layout.raw_key(move.file.path)
        if dest.exists(old_raw):
            mapping[old_raw] = new_raw
    from shared.run.process import copy_to_temp  # seekable, spooled: every backend takes it

    try:
        for old, new in mapping.items():
            edit = rewrite if old in move.previous.output_keys else None
            if old != new or edit:
                with dest.open_read(old) as source, copy_to_temp(source) as body:
                    dest.write(new, edit(body) if edit else body)
    except StorageNotFound:
        log.warning("a moved input's output is missing", extra={"path": move.file.path})
        return None
    outputs = [mapping[k] for k in move.previous.output_keys]
    record.output_keys = outputs
    record.previous_path = move.previous.path
    if pipeline.output.keep_raw and layout.raw_key(move.previous.path) in mapping:
        record.raw_key = layout.raw_key(move.file.path)
    return InputState(
        md5=move.file.md5,
        modified_time=move.file.modified_time,
        size=move.file.size,
        path=move.file.path,
        output_keys=outputs,
        run_id=run_id,
    )


def removed_keys(pipeline: Pipeline, entry: InputState) -> list[str]:
    """What a removed input leaves in the destination: outputs, ``_raw/`` and quarantine copies."""
    keys = list(entry.output_keys)
    if pipeline.output.keep_raw:
        keys.append(layout.raw_key(entry.path))
    if entry.quarantine_key:
        keys.append(entry.quarantine_key)
    return keys


def delete_unclaimed(
    dest: Storage, keys: Iterable[str], claimed: Mapping[str, InputState]
) -> list[str]:
    """Delete ``keys`` that no entry of the (saved) state claims; the keys deleted, sorted."""
    kept = {k for entry in claimed.values() for k in entry.output_keys}
    kept |= {entry.quarantine_key for entry in claimed.values() if entry.quarantine_key}
    doomed = sorted(set(keys) - kept)
    for key in doomed:
        dest.delete(key)
    return doomed


def plan_section(
    forget: Iterable[str], record: Mapping[str, InputState], delete: Iterable[str]
) -> dict[str, Any]:
    """The mirror part of a fanned-out run's plan, applied by its finalizer."""
    return {
        "forget": sorted(set(forget)),
        "record": {k: vars(v) for k, v in sorted(record.items())},
        "delete": sorted(set(delete)),
    }
