"""A fanned-out run's one finalizer (its progress is :mod:`shared.run.fanout.progress`).

Every worker, after recording its item, calls :func:`maybe_finalize`. When the results
under ``_runs/<run_id>/items/`` number as many as the plan's items, the caller that takes the
lease ``finalize/<run_id>`` (``fanout.finalize_seconds``, renewed while it works) merges the
results' state entries into ``_state/<pipeline>.json``, writes ``_runs/<run_id>.json`` and
releases the pipeline's sync lease. A finalizer that dies leaves its lease to expire; the next
caller (a redelivered item, or a new sync of the pipeline via :func:`finish_stalled_run`) then
finishes the run. Every step is safe to repeat.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from shared.errors import LeaseLost, StorageNotFound
from shared.log import get_logger
from shared.run.engine import stale_outputs, sync_lease
from shared.run.fanout.items import ItemResult
from shared.run.fanout.options import DEFAULT_FINALIZE_SECONDS
from shared.run.finish import report_run
from shared.run.lease import Lease
from shared.run.manifest import InputRecord, RunManifest, utc_now
from shared.run.pending import follow_up
from shared.run.state import InputState, SyncState
from shared.run.tables.register import register_from_plan
from shared.storage import open_storage
from shared.storage.layout import finalize_lock, plan_key, result_key, results_prefix, run_key

if TYPE_CHECKING:
    from shared.config import Pipeline
    from shared.run.lease import LeaseInfo
    from shared.run.notify.options import NotifyOptions
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


def _merged_records(plan: dict[str, Any], results: list[ItemResult]) -> list[InputRecord]:
    """The plan's records with each planned one replaced by its item's record, in plan order."""
    done = {(r.source_id, r.path): r for result in results for r in result.records}
    merged = []
    for raw in plan["inputs"]:
        record = InputRecord(**raw)
        result = done.get((record.source_id, record.path))
        if result is not None:
            result.previous_path = result.previous_path or record.previous_path
        merged.append(result or record)
    return merged


def run_lease(dest: Storage, pipeline: str, run_id: str, ttl: float | None = None) -> Lease:
    """The pipeline's sync lease as held by a fanned-out run (planner takes, finalizer frees)."""
    return sync_lease(dest, pipeline, run_id, ttl=ttl, holder=f"fanout-{run_id}")


def finalize_lease(
    dest: Storage,
    run_id: str,
    ttl: float = DEFAULT_FINALIZE_SECONDS,
    clock: Callable[[], float] = time.time,
) -> Lease:
    """The lease that elects a run's one live finalizer (``_locks/finalize/<run_id>/``)."""
    return Lease(dest, finalize_lock(run_id), ttl=ttl, run_id=run_id, clock=clock)


def maybe_finalize(
    dest: Storage, run_id: str, expected: int = 0, *, clock: Callable[[], float] = time.time
) -> RunManifest | None:
    """If every item has reported and no live finalizer is at work, finish the run.

    ``expected`` (the item count, when the caller knows it) spares reading the plan until the
    count is reached. ``None`` when the run is not complete, already finished, or another
    finalizer holds (or took over) the finalize lease.
    """
    ids = result_ids(dest, run_id)
    if expected and len(ids) < expected:
        return None
    plan = load_plan(dest, run_id)
    if plan is None:
        return None
    if len(ids) < len(plan["item_ids"]) or dest.exists(run_key(run_id)):
        return None
    ttl = float(plan.get("finalize_seconds") or DEFAULT_FINALIZE_SECONDS)
    lease = finalize_lease(dest, run_id, ttl, clock)
    if lease.try_acquire() is None:
        return None  # a live finalizer is at work; if it dies, its lease expires
    if dest.exists(run_key(run_id)):  # the previous holder finished just before we took over
        lease.discard()
        return None
    lease.start_renewing()
    try:
        manifest = _finalize(dest, plan, ids, lease)
    except LeaseLost as exc:
        lease.stop_renewing()
        log.warning("finalizer lost its lease", extra={"run_id": run_id, "error": str(exc)})
        return None
    except BaseException:
        lease.release()  # the next caller may try again at once
        raise
    lease.discard()  # the manifest records the run as finished
    return manifest


def finish_stalled_run(pipeline: Pipeline, holder: LeaseInfo) -> bool:
    """Free ``pipeline``'s sync lease, held by ``holder``, if that is a fanned-out run whose
    finalizer is gone: finish the run (or just release the lease, if the finalizer died after
    writing the manifest). True when the lease was freed, so the sync may try again."""
    run_id = holder.run_id
    if not run_id or holder.holder != f"fanout-{run_id}":
        return False  # an inline sync: it releases (or its lease expires) on its own
    dest = open_storage(pipeline.output.url)
    if not dest.exists(run_key(run_id)):
        if maybe_finalize(dest, run_id) is None:
            return False  # items still pending, or a live finalizer is at work
        log.info("finished a stalled fan-out run", extra={"run_id": run_id})
        return True
    lease = run_lease(dest, pipeline.name, run_id)
    if not lease.adopt():
        return False
    lease.release()
    log.info("released the sync lease of a finished fan-out run", extra={"run_id": run_id})
    return True


def _finalize(dest: Storage, plan: dict[str, Any], ids: set[str], lease: Lease) -> RunManifest:
    """Merge the state, write the manifest, free the sync lease; raises LeaseLost if taken over."""
    run_id = plan["run_id"]
    results = read_results(dest, run_id, ids)
    sync = run_lease(dest, plan["pipeline"], run_id)
    held = sync.adopt()  # the planner took the pipeline's sync lease for this run
    if held:
        state, stale = _merge_state(dest, plan, results)
        lease.check()  # fencing: another finalizer took over (LeaseLost); it saves the state
        held = sync.adopt()  # still ours, checked without renewing (keeps the run's expiry)
        if held:
            state.save(dest)
            for key in sorted(stale):  # only once the state no longer claims them
                dest.delete(key)
    manifest = assemble(plan, results)
    if held:
        register_from_plan(dest, plan, manifest.catalog)  # Glue / BigQuery, if set
    if not held:  # it expired and another sync took over: its state wins, ours is dropped
        manifest.notes.append(
            "the run outlived fanout.lease_seconds and another sync took the lease: state not "
            "updated, so the next run processes these files again"
        )
    lease.check()
    dest.write(run_key(run_id), manifest.to_json(), content_type="application/json")
    if held:
        sync.release()
        # A fanned-out run settles no push notification: if one came, a push worker runs
        # the owed sync inline now (shared.run.pending).
        follow_up(dest, plan["pipeline"], reason=f"notified during fanned-out run {run_id}")
    log.info(
        "fan-out run finished",
        extra={"run_id": run_id, "pipeline": plan["pipeline"], **manifest.counts()},
    )
    report_run(dest, manifest, notify=plan_notify(plan))
    return manifest


def plan_notify(plan: dict[str, Any]) -> NotifyOptions | None:
    """The pipeline's ``notify`` options as the planner recorded them (None: none)."""
    from shared.run.notify.options import NotifyOptions

    raw = plan.get("notify")
    return NotifyOptions.model_validate(raw) if raw else None


def assemble(plan: dict[str, Any], results: list[ItemResult]) -> RunManifest:
    """The run's manifest from its plan and its item results."""
    crashed = [r for r in results if r.status == "failed"]
    notes = list(plan.get("notes", []))
    notes.append(
        f"fanned out: {len(plan['item_ids'])} work items of up to {plan['batch_size']} files"
    )
    if crashed:
        notes.append(f"{len(crashed)} work item(s) failed as a whole: " + crashed[0].error_text())
    manifest = RunManifest(
        run_id=plan["run_id"],
        pipeline=plan["pipeline"],
        trigger=plan["trigger"],
        source=plan["source"],
        destination=plan["destination"],
        started_at=plan["started_at"],
        ended_at=utc_now(),
        inputs=_merged_records(plan, results),
        notes=notes,
        removals_blocked=plan.get("removals_blocked"),
    )
    manifest.note_deferred()  # inputs a worker's time ran out before: the next run's
    return manifest


def _merge_state(
    dest: Storage, plan: dict[str, Any], results: list[ItemResult]
) -> tuple[SyncState, set[str]]:
    """The state with the results merged (what succeeded or was quarantined recorded,
    downloads/crashes forgotten), and the outputs no input produces any more.

    Safe to repeat after a crash: merging results the state already holds changes nothing, and
    the stale outputs are computed against the plan's snapshot of the state before the run too
    (so a re-run still finds them), minus every output the merged state claims or a forgotten
    input last produced (so no current output is ever deleted, even one another input shares).
    """
    state = SyncState.load(dest, plan["pipeline"], plan["definition"])
    before: dict[str, list[str]] = plan.get("previous_outputs", {})
    # The plan's moves and removals: old entries forgotten, moved ones recorded at their new
    # path, and the old keys deleted once the saved state no longer claims them.
    mirrored = plan.get("mirror", {})
    for key in mirrored.get("forget", ()):
        state.forget(key)
    for key, entry in mirrored.get("record", {}).items():
        state.record(key, InputState(**entry))
    stale: set[str] = set(mirrored.get("delete", ()))
    stale |= set(state.pending_deletes)  # an inline run's, left by a crash (cleared by the next)
    kept: set[str] = set()
    for result in results:
        for key, entry in result.states.items():
            previous = state.inputs.get(key)
            old = set(before.get(key, ())) | set(previous.output_keys if previous else ())
            if entry is None:  # tried again next run: its last outputs stay current
                kept |= old
                state.forget(key)
                continue
            fresh = InputState(**entry)
            stale |= stale_outputs(old, fresh)  # outputs this input no longer produces
            state.record(key, fresh)
    # The changes-feed position only when every input was recorded and no removal held back.
    clean = not plan.get("removals_blocked") and all(
        r.status != "failed" and all(e is not None for e in r.states.values()) for r in results
    )
    state.set_feed(plan.get("feed") if clean else None)
    kept.update(k for entry in state.inputs.values() for k in entry.output_keys)
    kept.update(e.quarantine_key for e in state.inputs.values() if e.quarantine_key)
    return state, stale - kept
