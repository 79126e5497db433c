"""Every output key has one owner: the names a run's inputs write under, decided before fetching.

An input's outputs are named after its Drive path (:func:`shared.storage.layout.output_key`).
Two inputs can still resolve to one key (``a.csv`` and ``a.xlsx`` both give ``a.parquet``;
``sub\\b.csv`` at the root and ``sub/b.csv`` give ``sub/b.parquet``; names that only differ by
control characters or case), or one input's key can be a folder of another's (a file ``k.tsv``
writing ``k.csv`` beside a Drive folder ``k.csv/``, which a local disk cannot hold).

The rule, deterministic and order-independent (the same on every run):

* a key the state gives an input stays that input's: another input new to it yields, and an
  input keeps a renamed output path it was given in an earlier run;
* in a prefix clash the *upper* side yields, even if it owned the key: the file whose key is a
  folder of other outputs (a folder holds many inputs; renaming one file is the least change),
  or the workbook whose sheets would go in a folder other inputs write in (its sheet names
  are not known before it is read). Below a key the state still gives another input, an input
  fails clearly and is tried again: next run, once that input has been renamed;
* among inputs new to a key, the one whose name changed least keeps it when no other changed
  as little (a real ``a_b.csv`` beside ``a\nb.csv``; ``sub/b.csv`` beside ``sub\\b.csv``; in
  the table layout, ``a__b.csv`` beside ``a/b.csv``, whose folder alone was joined by ``__``);
  otherwise all of them yield (``a.csv`` and ``a.xlsx``), so none is silently "the real one";
* an input that yields gets ``~<8 hex of sha1(Drive id)>`` before its input extension, like
  the listing's ``dup~`` tags (a longer tag from id and path if that clashes too); one that
  still clashes, or has no usable key, fails clearly and is not fetched.

Keys compare case-insensitively, as the listing's names do, so outputs also fit a macOS or
Windows disk.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

from shared.drive.naming import id_tag
from shared.errors import StorageError
from shared.storage import layout, safe_key

if TYPE_CHECKING:
    from shared.config import Pipeline
    from shared.drive import DriveFile
    from shared.run.manifest import InputRecord
    from shared.run.state import SyncState


class PlannedInput(Protocol):
    """A file to fetch, as the engine plans it (``shared.run.engine.Planned``)."""

    @property
    def file(self) -> DriveFile: ...
    @property
    def format(self) -> str: ...
    @property
    def record(self) -> InputRecord: ...


P = TypeVar("P", bound=PlannedInput)


@dataclass(frozen=True)
class Candidate:
    """An input to fetch: where its outputs would go, and what the state says it had."""

    owner: str  # its state key, ``<id>:<path>``
    file_id: str
    path: str  # its Drive path
    sheets_dir: bool = False  # writes ``<stem>/<sheet><ext>`` per sheet (xlsx, several sheets)
    previous_path: str | None = None  # the output path of its last written outputs, if any


@dataclass(frozen=True)
class Assignment:
    """The output path chosen for an input (``None``: it has none and fails) and why."""

    output_path: str | None
    reason: str


@dataclass(frozen=True)
class _Claim:
    owner: str
    file_id: str
    leaf: str  # the key, or the folder it writes in alone; casefolded
    shown: str  # the same, as written
    is_folder: bool = False


def tagged_path(path: str, tag: str) -> str:
    """``sub/a.csv`` → ``sub/a~<tag>.csv``: the tag goes before the input extension."""
    stem = layout.strip_input_extension(path)
    return f"{stem}~{tag}{path[len(stem) :]}"


def quarantine_path(file_id: str, path: str) -> str:
    """Where an input that got no output key keeps its bytes in the run's quarantine: one flat
    name led by a tag of its id and path (``<16 hex>~a_b.csv``), so it clashes with nothing."""
    tag = hashlib.sha1(f"{file_id}:{path}".encode(), usedforsecurity=False).hexdigest()[:16]
    try:
        return safe_key(f"{tag}~{path.rsplit('/', 1)[-1]}").replace("/", "_")
    except StorageError:
        return tag


def _tags(candidate: Candidate) -> list[str]:
    longer = hashlib.sha1(f"{candidate.file_id}:{candidate.path}".encode(), usedforsecurity=False)
    return [id_tag(candidate.file_id), longer.hexdigest()[:16]]


def _stem(path: str, flat: bool = False) -> str:
    if flat:  # output.layout = "table": the whole path in one file name
        return layout.flat_name(path)
    return safe_key(layout.strip_input_extension(path))


def _cleanness(path: str, flat: bool = False) -> int:
    """How little the name changed to become a key: 2 not at all, 1 (flat) only its folders
    joined by ``__``, 0 sanitised. Of clashing names, the one cleaner than all others keeps."""
    raw = layout.strip_input_extension(path)
    try:
        stem = _stem(path, flat)
    except StorageError:
        return 0
    if stem == raw:
        return 2
    return 1 if flat and stem == raw.replace("/", layout.TABLE_SEPARATOR) else 0


def _ancestors(key: str) -> list[str]:
    parts = key.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def _claim(candidate: Candidate, path: str, ext: str, flat: bool = False) -> _Claim:
    """The claim of ``candidate`` written under ``path``; StorageError when it has no key."""
    stem = _stem(path, flat)
    key = safe_key(stem + ext)  # too long?
    shown = stem if candidate.sheets_dir else key
    return _Claim(candidate.owner, candidate.file_id, shown.casefold(), shown, candidate.sheets_dir)


class _Index:
    """Every claim by leaf, and by the folders its leaf sits in."""

    def __init__(self, claims: Iterable[_Claim]) -> None:
        self.leaves: defaultdict[str, list[_Claim]] = defaultdict(list)
        self.parents: defaultdict[str, list[_Claim]] = defaultdict(list)
        for claim in claims:
            self.add(claim)

    def add(self, claim: _Claim) -> None:
        self.leaves[claim.leaf].append(claim)
        for parent in _ancestors(claim.leaf):
            self.parents[parent].append(claim)

    def clashes(self, claim: _Claim) -> tuple[list[_Claim], list[_Claim], list[_Claim]]:
        """Other owners' claims: (the same leaf, leaves under it, leaves above it).

        A file key and a folder written alone with one name clash as "above" for the file.
        """

        def other(c: _Claim) -> bool:
            return c.owner != claim.owner and c.file_id != claim.file_id

        here = [c for c in self.leaves[claim.leaf] if other(c)]
        same = [c for c in here if c.is_folder == claim.is_folder]
        crossed = [c for c in here if c.is_folder != claim.is_folder]
        below = [c for c in self.parents[claim.leaf] if other(c)]  # sheets: any name under it
        above = [c for p in _ancestors(claim.leaf) for c in self.leaves[p] if other(c)]
        if claim.is_folder:  # a file named like the folder sits above it
            above += crossed
        else:
            below += crossed
        return same, below, above


def _describe(claims: Sequence[_Claim], most: int = 3) -> str:
    owners = sorted({c.owner for c in claims})
    more = f" and {len(owners) - most} more" if len(owners) > most else ""
    return ", ".join(owners[:most]) + more


def assign_output_paths(
    candidates: Sequence[Candidate],
    taken: Mapping[str, Sequence[str]],
    ext: str,
    *,
    flat: bool = False,
) -> dict[str, Assignment]:
    """Output paths for the candidates that cannot use their Drive path, by owner.

    ``taken``: the keys the state gives each owner (relative to any partition folders); they
    do not move in this run, though a candidate's own keys never clash with it. ``ext``: the
    output extension. ``flat``: outputs are named by :func:`shared.storage.layout.flat_name`
    (``output.layout = "table"``). Pure and order-independent.
    """
    fixed = [
        _Claim(owner, owner.split(":", 1)[0], key.casefold(), key)
        for owner, keys in taken.items()
        for key in keys
    ]
    fixed_owners = set(taken)
    result: dict[str, Assignment] = {}
    current: dict[str, tuple[Candidate, str, _Claim]] = {}
    for cand in candidates:
        path = cand.previous_path or cand.path
        try:
            current[cand.owner] = (cand, path, _claim(cand, path, ext, flat))
        except StorageError as exc:
            result[cand.owner] = Assignment(None, f"no usable output key: {exc}")
    index = _Index(fixed + [claim for _, _, claim in current.values()])

    def owns(owner: str) -> bool:  # it wrote this very path before
        cand, path, _ = current[owner]
        return cand.previous_path is not None and path == cand.previous_path

    yielders: dict[str, str] = {}  # owner → why
    for owner, (cand, path, claim) in sorted(current.items()):
        same, below, above = index.clashes(claim)
        fixed_above = [c for c in above if c.owner in fixed_owners]
        if fixed_above:  # cannot move the other, and a tag here would not help
            why = f"{claim.shown} would be under {_describe(fixed_above)}'s output"
            if {c.owner for c in fixed_above} <= set(current):  # they move now: next run
                why += ", until that input's renamed output replaces it (the next run)"
            else:
                why += "; rename one of them in Drive"
            result[owner] = Assignment(None, f"output key clash: {why}")
        elif below:
            yielders[owner] = f"{claim.shown} is a folder of {_describe(below)}'s outputs"
        elif any(c.owner in fixed_owners for c in same):
            yielders[owner] = f"{claim.shown} is already {_describe(same)}'s"
        elif same:
            rivals = [c.owner for c in same]
            if any(owns(r) for r in rivals):
                keeps = False
            elif owns(owner):
                keeps = True
            else:
                mine = _cleanness(path, flat)
                keeps = mine > 0 and all(_cleanness(current[r][1], flat) < mine for r in rivals)
            if not keeps:
                yielders[owner] = f"{claim.shown} is also {_describe(same)}'s"
        elif path != cand.path:
            result[owner] = Assignment(path, "keeps the output path it was given before")
    retired = {current[owner][2] for owner in yielders}
    for owner in sorted(yielders):
        cand = current[owner][0]
        chosen: Assignment | None = None
        for tag in _tags(cand):
            path = tagged_path(cand.path, tag)
            try:
                claim = _claim(cand, path, ext, flat)
            except StorageError as exc:
                chosen = Assignment(None, f"no usable output key: {exc}")
                break
            if not any(c not in retired for found in index.clashes(claim) for c in found):
                chosen = Assignment(path, f"output renamed: {yielders[owner]}")
                index.add(claim)
                break
        result[owner] = chosen or Assignment(
            None, f"output key clash cannot be resolved: {yielders[owner]}"
        )
    return result


def claim_outputs(
    pipeline: Pipeline, state: SyncState, to_fetch: list[P], state_key: Callable[[DriveFile], str]
) -> list[P]:
    """Give each input to fetch an output path no other input shares (see the module doc).

    Sets ``record.output_path`` and ``record.renamed`` where the Drive path cannot be used;
    an input left without a usable path is marked failed with the reason and stays in the
    list: it is fetched only for a quarantine copy of its bytes (see ``fetch_and_process``).
    """
    from shared.transform.outputs import compression
    from shared.transform.writers import extension

    output = pipeline.output
    ext = extension(output.format, compression(output.compression))
    depth = len(output.partition_by)
    flat = output.layout == "table"  # one file name per input, sheets in tables of their own
    sheets_dir = pipeline.read.excel.sheets != "first" and not flat
    # Every key in the state stays its owner's until the owner's run replaces or deletes it,
    # inputs being fetched now included: a key they give up is only deleted once they are done.
    if flat:
        taken = {
            owner: [
                key.rsplit("/", 1)[-1]
                for key in entry.output_keys
                if layout.is_table_output(key, pipeline.name, depth)
            ]
            for owner, entry in state.inputs.items()
            if entry.output_keys
        }
    else:
        taken = {
            owner: [
                key.split("/", depth)[-1] for key in entry.output_keys if key.count("/") >= depth
            ]
            for owner, entry in state.inputs.items()
            if entry.output_keys
        }
    candidates = []
    for planned in to_fetch:
        owner = state_key(planned.file)
        previous = state.inputs.get(owner)
        previous_path = None
        if previous is not None and previous.output_keys and not previous.error:
            previous_path = previous.output_path or planned.file.path
        candidates.append(
            Candidate(
                owner=owner,
                file_id=planned.file.id,
                path=planned.file.path,
                sheets_dir=sheets_dir and planned.format == "xlsx",
                previous_path=previous_path,
            )
        )
    assigned = assign_output_paths(candidates, taken, ext, flat=flat)
    kept = []
    for planned in to_fetch:
        choice = assigned.get(state_key(planned.file))
        if choice is not None and choice.output_path is None:
            planned.record.status, planned.record.error = "failed", choice.reason
        elif choice is not None:
            planned.record.output_path = choice.output_path
            planned.record.renamed = choice.reason
        kept.append(planned)
    return kept
