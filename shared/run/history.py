"""Run history: every run's summary in an index that lists newest first, in a few requests.

A manifest lives at ``_runs/<run id>.json``; listing ``_runs/`` would return them oldest first
and, for 10,000 runs, cost ten list pages plus a read per run. So each run, once its manifest
is final, also writes a small summary under ``_runs/index/<view>/<inverted run id>.json``
(:func:`shared.storage.layout.newest_first`) in four views: ``all``, ``status=<status>``,
``pipeline=<name>/all`` and ``pipeline=<name>/status=<status>``. S3 and GCS list keys in
lexicographic order, so a page of the newest ``limit`` runs of any view is one list request
(``limit + 1`` keys after the cursor's key) plus ``limit`` small reads, however many runs
exist. The cursor is the last run id of a page.

Manifests written before the index existed have no entry. ``_runs/index/origin.json`` names
the first indexed run; when a view runs out, :func:`list_runs` goes on with the manifests
older than that run that have no entry (listing ``_runs/`` up to it and reading each one), so
nothing written today disappears from the history. ``drivepipe runs reindex`` writes their
entries once, after which that fallback costs one list request.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from shared.errors import StorageNotFound
from shared.log import get_logger
from shared.run.manifest import RUN_ID_PATTERN
from shared.storage.layout import (
    RUN_INDEX_PREFIX,
    RUNS_PREFIX,
    run_id_of_index_key,
    run_index_key,
    run_index_origin_key,
    run_index_view,
    run_key,
)

if TYPE_CHECKING:
    from shared.run.manifest import RunManifest
    from shared.storage import Storage

RunStatus = Literal["failed", "blocked", "ok"]
RUN_STATUSES: tuple[RunStatus, ...] = ("failed", "blocked", "ok")
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
READ_THREADS = 8
# An id below every real one: after a reindex, no manifest needs the fallback.
NO_UNINDEXED = "00000000T000000Z-00000000"
log = get_logger("history")


def run_status(counts: Mapping[str, int], removals_blocked: object = None) -> RunStatus:
    """``failed`` when an input failed, ``blocked`` when the removal guard held removals back,
    else ``ok``."""
    if counts.get("failed"):
        return "failed"
    if removals_blocked or counts.get("removal_blocked"):
        return "blocked"
    return "ok"


def entry_of(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The index entry (a run's summary, a few hundred bytes) of a manifest's JSON form."""
    inputs = manifest.get("inputs") or []
    counts = manifest.get("counts") or {}
    return {
        "run_id": manifest["run_id"],
        "pipeline": manifest.get("pipeline"),
        "trigger": manifest.get("trigger"),
        "status": run_status(counts, manifest.get("removals_blocked")),
        "started_at": manifest.get("started_at"),
        "ended_at": manifest.get("ended_at"),
        "counts": {name: n for name, n in counts.items() if n},
        "rows_out": sum(r.get("rows_out") or 0 for r in inputs if r.get("status") == "written"),
        "bytes_out": sum(r.get("bytes_out") or 0 for r in inputs),
        "quarantined": sum(1 for r in inputs if r.get("quarantine_key")),
        "removals_blocked": manifest.get("removals_blocked"),
        "manifest": run_key(manifest["run_id"]),
    }


def views(pipeline: str | None, status: str) -> list[str]:
    """The four views a run of ``pipeline`` with ``status`` is listed in."""
    found = [run_index_view(), run_index_view(status=status)]
    if pipeline:
        found += [run_index_view(pipeline), run_index_view(pipeline, status)]
    return found


def index_manifest(dest: Storage, manifest: Mapping[str, Any]) -> None:
    """Write ``manifest``'s entry in each of its views (its manifest is already stored)."""
    entry = entry_of(manifest)
    body = json.dumps(entry, ensure_ascii=False).encode("utf-8")
    keys = [
        run_index_key(view, entry["run_id"]) for view in views(entry["pipeline"], entry["status"])
    ]
    with ThreadPoolExecutor(max_workers=len(keys)) as pool:  # four small puts at once
        list(pool.map(lambda key: dest.write(key, body, content_type="application/json"), keys))


def index_run(dest: Storage, manifest: RunManifest) -> None:
    """Index a finished run: its entries, and the origin marker if this is the first run."""
    dest.create_if_absent(run_index_origin_key(), _origin_body(manifest.run_id))
    index_manifest(dest, manifest.to_dict())


def _origin_body(run_id: str) -> bytes:
    return json.dumps({"run_id": run_id}).encode()


@dataclass(frozen=True)
class RunPage:
    """One page of the history, newest first; ``next_cursor`` is ``None`` on the last page."""

    runs: list[dict[str, Any]]
    next_cursor: str | None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form ``GET /runs`` and ``--json`` print."""
        return {"runs": self.runs, "next_cursor": self.next_cursor}


def list_runs(
    dest: Storage,
    *,
    pipeline: str | None = None,
    status: str | None = None,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> RunPage:
    """The newest ``limit`` runs (of ``pipeline``, with ``status``) older than ``cursor``."""
    view = run_index_view(pipeline, status)
    start = run_index_key(view, cursor) if cursor else None
    listed = [info.key for info in dest.list(view, start_after=start, limit=limit + 1)]
    runs = _read_entries(dest, listed[:limit])
    if len(listed) > limit:
        return RunPage(runs, run_id_of_index_key(listed[limit - 1]))
    # The view ran out: go on with the manifests written before the index existed.
    room = limit - len(runs)
    older = _unindexed(dest, pipeline, status, before=cursor, wanted=room + 1)
    runs += older[:room]
    more = len(older) > room
    return RunPage(runs, runs[-1]["run_id"] if more and runs else None)


def _read_entries(dest: Storage, keys: list[str]) -> list[dict[str, Any]]:
    """Index entries read in parallel, in ``keys`` order; one deleted meanwhile is left out."""

    def read(key: str) -> dict[str, Any] | None:
        try:
            entry: dict[str, Any] = json.loads(dest.read(key))
        except StorageNotFound:
            return None
        return entry

    if not keys:
        return []
    with ThreadPoolExecutor(max_workers=min(READ_THREADS, len(keys))) as pool:
        return [entry for entry in pool.map(read, keys) if entry is not None]


def _origin(dest: Storage) -> str | None:
    try:
        origin = json.loads(dest.read(run_index_origin_key())).get("run_id")
    except (StorageNotFound, ValueError, AttributeError):
        return None
    return origin if isinstance(origin, str) and RUN_ID_PATTERN.match(origin) else None


def unindexed_run_ids(dest: Storage, before: str | None = None) -> list[str]:
    """Ids of the manifests older than the index's origin (all, when there is no origin),
    newest first; those below ``before`` only. Some may have an entry after all."""
    origin = _origin(dest)
    stop = f"{RUNS_PREFIX}{origin}" if origin else RUN_INDEX_PREFIX
    found: list[str] = []
    for info in dest.list(RUNS_PREFIX):
        if info.key >= stop:
            break
        name = info.key[len(RUNS_PREFIX) :]
        run_id = name.removesuffix(".json")
        if "/" in name or not name.endswith(".json") or not RUN_ID_PATTERN.match(run_id):
            continue
        if before is None or run_id < before:
            found.append(run_id)
    return sorted(found, reverse=True)


def _unindexed(
    dest: Storage, pipeline: str | None, status: str | None, *, before: str | None, wanted: int
) -> list[dict[str, Any]]:
    """Up to ``wanted`` entries built from manifests without an index entry, newest first."""
    found: list[dict[str, Any]] = []
    all_view = run_index_view()
    for run_id in unindexed_run_ids(dest, before):
        if len(found) >= wanted:
            break
        if dest.exists(run_index_key(all_view, run_id)):
            continue  # indexed: listed from the view already
        try:
            entry = entry_of(json.loads(dest.read(run_key(run_id))))
        except (StorageNotFound, ValueError, KeyError):
            continue
        if (pipeline is None or entry["pipeline"] == pipeline) and (
            status is None or entry["status"] == status
        ):
            found.append(entry)
    return found


def reindex(dest: Storage, *, threads: int = READ_THREADS) -> int:
    """Write the entries of every manifest that has none; returns how many were written.

    Afterwards the origin marker says nothing is unindexed, so :func:`list_runs` no longer
    reads manifests when a view runs out.
    """
    all_view = run_index_view()

    def add(run_id: str) -> bool:
        if dest.exists(run_index_key(all_view, run_id)):
            return False
        try:
            index_manifest(dest, json.loads(dest.read(run_key(run_id))))
        except (StorageNotFound, ValueError, KeyError) as exc:
            log.warning("manifest not indexed", extra={"run_id": run_id, "error": str(exc)})
            return False
        return True

    ids = unindexed_run_ids(dest)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        written = sum(pool.map(add, ids))
    dest.write(run_index_origin_key(), _origin_body(NO_UNINDEXED), content_type="application/json")
    return written


def read_manifest(dest: Storage, run_id: str) -> dict[str, Any] | None:
    """The stored manifest of ``run_id``, or ``None``."""
    try:
        manifest: dict[str, Any] = json.loads(dest.read(run_key(run_id)))
    except StorageNotFound:
        return None
    return manifest


def merge_pages(pages: Iterable[RunPage], limit: int) -> RunPage:
    """One page from the pages of several destinations (same cursor and filters each)."""
    runs: list[dict[str, Any]] = []
    more = False
    for page in pages:
        runs += page.runs
        more = more or page.next_cursor is not None
    runs.sort(key=lambda entry: entry["run_id"], reverse=True)
    more = more or len(runs) > limit
    runs = runs[:limit]
    return RunPage(runs, runs[-1]["run_id"] if more and runs else None)
