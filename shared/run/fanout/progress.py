"""A fanned-out run's progress (``GET /runs/<run_id>`` until the manifest exists), read
incrementally.

Item results are created once and never change, so what progress needs of each one (the item's
status; per record, its place in the plan, its status and, if failed, its error) is kept in
the aggregate ``_runs/<run_id>/progress.json``, and a poll reads only the results that appeared
since: the plan, one LIST, the aggregate and the new results, not every result every time.

The aggregate is a cache. Absent, unreadable, of another version or of another run, it is
rebuilt from the results. Any aggregate holds a subset of the immutable results, so pollers
that race to write it are harmless: the last writer wins, and the items only the loser had read
are read again by the next poll. The finalizer never reads it (the manifest is assembled from
the results themselves), and nothing reads it once the manifest exists; it stays beside the
plan and the results.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from shared.errors import StorageError, StorageNotFound
from shared.log import get_logger
from shared.run.fanout.items import ItemResult
from shared.run.fanout.runs import load_plan, read_results, result_ids
from shared.run.manifest import STATUSES
from shared.storage.layout import progress_key

if TYPE_CHECKING:
    from shared.storage import Storage

AGGREGATE_VERSION = 1
ITEM_STATUSES = ("done", "failed")
log = get_logger("fanout")

# A record of a result: its index in the plan's inputs (its path if the plan does not list it),
# its status, and its error (kept for failed records only).
Record = tuple[int | str, str, str | None]
# An item: its result's status and records.
Item = tuple[str, list[Record]]


def progress(dest: Storage, run_id: str) -> dict[str, Any] | None:
    """Items done / failed / pending and file counts so far; ``None`` if not fanned out.

    Reads the results no earlier call has added to the aggregate, and saves the aggregate
    when it grew (a failure to save is logged, never raised).
    """
    plan = load_plan(dest, run_id)
    if plan is None:
        return None
    inputs: list[dict[str, Any]] = plan["inputs"]
    places: dict[tuple[str, str], int] = {}
    for index, raw in enumerate(inputs):
        places.setdefault((raw["source_id"], raw["path"]), index)
    ids = result_ids(dest, run_id)
    known = load_aggregate(dest, run_id, len(inputs))
    items = {item_id: known[item_id] for item_id in ids & known.keys()}
    new = sorted(ids - items.keys())
    if new:
        for item_id, result in zip(new, read_results(dest, run_id, set(new)), strict=True):
            items[item_id] = _compact(result, places)
        _save_aggregate(dest, run_id, len(inputs), items)
    return _report(run_id, plan, places, items)


def load_aggregate(dest: Storage, run_id: str, inputs: int) -> dict[str, Item]:
    """The items the aggregate holds; empty when it is absent or cannot be used."""
    try:
        raw = dest.read(progress_key(run_id))
    except StorageNotFound:
        return {}
    except StorageError as exc:
        log.warning(
            "cannot read the progress aggregate", extra={"run_id": run_id, "error": str(exc)}
        )
        return {}
    try:
        return _parse(json.loads(raw), run_id, inputs)
    except (ValueError, TypeError, KeyError) as exc:  # JSON and decode errors are ValueErrors
        log.warning("ignored the progress aggregate", extra={"run_id": run_id, "error": str(exc)})
        return {}


def _report(
    run_id: str,
    plan: dict[str, Any],
    places: dict[tuple[str, str], int],
    items: dict[str, Item],
) -> dict[str, Any]:
    """The progress answer: the plan's records, each replaced by its item's record (the last
    item in item order wins), counted by status; failed records in item order."""
    order = [items[item_id] for item_id in sorted(items)]
    planned = len(plan["item_ids"])
    failed_items = sum(1 for status, _ in order if status == "failed")
    reported: dict[int, str] = {}
    for _, records in order:
        for ref, status, _ in records:
            if isinstance(ref, int):
                reported[ref] = status
    inputs: list[dict[str, Any]] = plan["inputs"]
    files: dict[str, int] = dict.fromkeys(STATUSES, 0)
    for raw in inputs:
        place = places[(raw["source_id"], raw["path"])]
        files[reported.get(place, raw.get("status", "planned"))] += 1
    return {
        "run_id": run_id,
        "pipeline": plan["pipeline"],
        "status": "finalizing" if len(items) >= planned else "running",
        "started_at": plan["started_at"],
        "items": {
            "total": planned,
            "done": len(items) - failed_items,
            "failed": failed_items,
            "pending": planned - len(items),
        },
        "files": files,
        "failed": [
            {"path": inputs[ref]["path"] if isinstance(ref, int) else ref, "error": error}
            for _, records in order
            for ref, status, error in records
            if status == "failed"
        ],
    }


def _compact(result: ItemResult, places: dict[tuple[str, str], int]) -> Item:
    """What progress needs of one result."""
    records: list[Record] = [
        (
            places.get((r.source_id, r.path), r.path),
            r.status,
            r.error if r.status == "failed" else None,
        )
        for r in result.records
    ]
    return result.status, records


def _save_aggregate(dest: Storage, run_id: str, inputs: int, items: dict[str, Item]) -> None:
    """Write the aggregate (whole, replacing any other poller's); log, never raise, a failure."""
    body = {
        "version": AGGREGATE_VERSION,
        "run_id": run_id,
        "inputs": inputs,
        "items": {
            item_id: [
                status,
                [[ref, s, e] if s == "failed" else [ref, s] for ref, s, e in records],
            ]
            for item_id, (status, records) in sorted(items.items())
        },
    }
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    try:
        dest.write(progress_key(run_id), data, content_type="application/json")
    except StorageError as exc:
        log.warning(
            "cannot save the progress aggregate", extra={"run_id": run_id, "error": str(exc)}
        )


def _parse(body: Any, run_id: str, inputs: int) -> dict[str, Item]:
    """The aggregate's items; ``ValueError`` naming what does not fit this run."""
    if not isinstance(body, dict) or body.get("version") != AGGREGATE_VERSION:
        raise ValueError(f"not a version-{AGGREGATE_VERSION} progress aggregate")
    if body.get("run_id") != run_id or body.get("inputs") != inputs:
        raise ValueError("made for another run or plan")
    if not isinstance(body["items"], dict):
        raise ValueError("items is not an object")
    return {str(item_id): _parse_item(entry, inputs) for item_id, entry in body["items"].items()}


def _parse_item(entry: Any, inputs: int) -> Item:
    status, raw_records = entry
    if status not in ITEM_STATUSES or not isinstance(raw_records, list):
        raise ValueError(f"malformed item entry {entry!r:.80}")
    records: list[Record] = []
    for raw in raw_records:
        ref, record_status, *error = raw
        in_plan = type(ref) is int and 0 <= ref < inputs
        errors_expected = 1 if record_status == "failed" else 0
        if (
            not (in_plan or isinstance(ref, str))
            or record_status not in STATUSES
            or len(error) != errors_expected
            or not all(e is None or isinstance(e, str) for e in error)
        ):
            raise ValueError(f"malformed record {raw!r:.80}")
        records.append((ref, record_status, error[0] if error else None))
    return status, records
