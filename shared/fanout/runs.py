"""A fanned-out run's progress, and its one finalizer.

Every worker, after recording its item, calls :func:`maybe_finalize`. When the results
under ``_runs/<run_id>/items/`` number as many as the plan's items, the caller that creates
``final.lock`` first assembles the manifest from the plan and the results, merges the
results' state entries into ``_state/<pipeline>.json`` and writes ``_runs/<run_id>.json``.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from shared.fanout.items import (
    ItemResult,
    final_lock_key,
    plan_key,
    result_key,
    results_prefix,
)
from shared.log import get_logger
from shared.manifest import STATUSES, InputRecord, RunManifest, run_key, utc_now
from shared.state import InputState, SyncState
from shared.storage import StorageNotFound

if TYPE_CHECKING:
    from shared.lease import Lease
    from shared.storage import Storage

READ_THREADS = 8
log = get_logger("fanout")


def load_plan(dest: Storage, run_id: str) -> dict[str, Any] | None:
    """The run's plan, or ``None`` when the run did not fan out (or does not exist)."""
    try:
        plan: dict[str, Any] = json.loads(dest.read(plan_key(run_id)))
    except StorageNotFound:
        return None
    return plan


def result_ids(dest: Storage, run_id: str) -> set[str]:
    """The items that have a result."""
    prefix = results_prefix(run_id)
    return {
        info.key[len(prefix) : -len(".json")]
        for info in dest.list(prefix)
        if info.key.endswith(".json")
    }


def read_results(dest: Storage, run_id: str, ids: set[str]) -> list[ItemResult]:
    """The results of ``ids``, read in parallel, in item order."""
    with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
        raws = list(pool.map(lambda i: dest.read(result_key(run_id, i)), sorted(ids)))
    return [ItemResult.from_json(raw) for raw in raws]


def progress(dest: Storage, run_id: str) -> dict[str, Any] | None:
    """Items done / failed / pending and file counts so far; ``None`` if not fanned out."""
    plan = load_plan(dest, run_id)
    if plan is None:
        return None
    results = read_results(dest, run_id, result_ids(dest, run_id))
    planned = len(plan["item_ids"])
    failed_items = sum(1 for r in results if r.status == "failed")
    files: dict[str, int] = dict.fromkeys(STATUSES, 0)
    for record in _merged_records(plan, results):
        files[record.status] += 1
    return {
        "run_id": run_id,
        "pipeline": plan["pipeline"],
        "status": "finalizing" if len(results) >= planned else "running",
        "started_at": plan["started_at"],
        "items": {
            "total": planned,
            "done": len(results) - failed_items,
            "failed": failed_items,
            "pending": planned - len(results),
        },
        "files": files,
        "failed": [
            {"path": r.path, "error": r.error}
            for result in results
            for r in result.records
            if r.status == "failed"
        ],
    }


def _merged_records(plan: dict[str, Any], results: list[ItemResult]) -> list[InputRecord]:
    """The plan's records with each planned one replaced by its item's record, in plan order."""
    done = {(r.source_id, r.path): r for result in results for r in result.records}
    merged = []
    for raw in plan["inputs"]:
        record = InputRecord(**raw)
        merged.append(done.get((record.source_id, record.path), record))
    return merged


def run_lease(dest: Storage, pipeline: str, run_id: str, ttl: float | None = None) -> Lease:
    """The pipeline's sync lease as held by a fanned-out run (planner takes, finalizer frees)."""
    from shared.pipeline import sync_lease

    return sync_lease(dest, pipeline, run_id, ttl=ttl, holder=f"fanout-{run_id}")


def maybe_finalize(dest: Storage, run_id: str, expected: int = 0) -> RunManifest | None:
    """If every item has reported, and nobody else got there first, finish the run.

    ``expected`` (the item count, when the caller knows it) spares reading the plan until the
    count is reached.
    """
    ids = result_ids(dest, run_id)
    if expected and len(ids) < expected:
        return None
    plan = load_plan(dest, run_id)
    if plan is None:
        return None
    if len(ids) < len(plan["item_ids"]) or dest.exists(run_key(run_id)):
        return None
    if not dest.create_if_absent(final_lock_key(run_id), utc_now().encode()):
        return None
    results = read_results(dest, run_id, ids)
    lease = run_lease(dest, plan["pipeline"], run_id)
    held = lease.adopt()  # the planner took the pipeline's sync lease for this run
    if held:
        _merge_state(dest, plan, results)
    manifest = assemble(plan, results)
    if not held:  # it expired and another sync took over: its state wins, ours is dropped
        manifest.notes.append(
            "the run outlived fanout.lease_seconds and another sync took the lease: state not "
            "updated, so the next run processes these files again"
        )
    dest.write(run_key(run_id), manifest.to_json(), content_type="application/json")
    if held:
        lease.release()
    log.info(
        "fan-out run finished",
        extra={"run_id": run_id, "pipeline": plan["pipeline"], **manifest.counts()},
    )
    return manifest


def assemble(plan: dict[str, Any], results: list[ItemResult]) -> RunManifest:
    """The run's manifest from its plan and its item results."""
    crashed = [r for r in results if r.status == "failed"]
    notes = [f"fanned out: {len(plan['item_ids'])} work items of up to {plan['batch_size']} files"]
    if crashed:
        notes.append(f"{len(crashed)} work item(s) failed as a whole: " + crashed[0].error_text())
    return RunManifest(
        run_id=plan["run_id"],
        pipeline=plan["pipeline"],
        trigger=plan["trigger"],
        source=plan["source"],
        destination=plan["destination"],
        started_at=plan["started_at"],
        ended_at=utc_now(),
        inputs=_merged_records(plan, results),
        notes=notes,
    )


def _merge_state(dest: Storage, plan: dict[str, Any], results: list[ItemResult]) -> None:
    """Record what succeeded (and quarantined content); forget downloads/crashes; drop stale."""
    state = SyncState.load(dest, plan["pipeline"], plan["definition"])
    for result in results:
        for key, entry in result.states.items():
            if entry is None:
                state.forget(key)
                continue
            previous = state.inputs.get(key)
            fresh = InputState(**entry)
            state.record(key, fresh)
            if previous and not fresh.error:  # outputs this input no longer produces
                for stale in set(previous.output_keys) - set(fresh.output_keys):
                    dest.delete(stale)
    state.save(dest)
