"""Every key drivepipe writes in a destination, built here and nowhere else.

Outputs: ``<partition dirs>/<path inside the Drive folder, extension replaced by the output
format>``, so a re-run overwrites rather than duplicates, and no file name can lead outside the
destination prefix. Bookkeeping lives under reserved prefixes, which no output uses::

    _runs/<run_id>.json                      the run's manifest
    _runs/<run_id>/plan.json                 a fanned-out run's plan
    _runs/<run_id>/items/<item_id>.json      one work item's result (created once)
    _runs/<run_id>/errors/<item_id>.json     one work item's last crash
    _runs/<run_id>/progress.json             what progress polls have read so far
    _state/<pipeline>.json                   the pipeline's incremental state
    _state/events/<sha256>.json              one processed storage event
    _state/attempts/<pipeline>/<sha256>.json an input being processed (poison-pill marker)
    _locks/<lease name>/<epoch>.json         a lease's epochs (sync/, finalize/, events/)
    _quarantine/<run_id>/<path>              a failed input's original bytes
    _raw/<path>                              ``keep_raw`` copies
    _folders/<folder id>/...                 a sync of another folder than the pipeline's: its
                                             outputs and bookkeeping, laid out as above

An isolated run's rows sit under a ``_``-prefixed folder like the bookkeeping: reserved, so
no output key of the pipeline can reach them and no storage event they cause triggers work.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from shared.storage import safe_key

RUNS_PREFIX = "_runs/"
STATE_PREFIX = "_state/"
LOCKS_PREFIX = "_locks/"
QUARANTINE_PREFIX = "_quarantine/"
RAW_PREFIX = "_raw/"
FOLDERS_PREFIX = "_folders/"
RESERVED_PREFIXES = (
    RUNS_PREFIX,
    STATE_PREFIX,
    QUARANTINE_PREFIX,
    RAW_PREFIX,
    LOCKS_PREFIX,
    FOLDERS_PREFIX,
)
EPOCH_DIGITS = 12
_INPUT_EXTENSIONS = (".csv", ".tsv", ".xlsx", ".json", ".jsonl", ".ndjson", ".parquet", ".txt")


def strip_input_extension(path: str) -> str:
    """``sales/q1.csv`` → ``sales/q1``; unknown extensions are kept (``a.v2`` stays)."""
    lowered = path.lower()
    for ext in _INPUT_EXTENSIONS:
        if lowered.endswith(ext) and len(path) > len(ext):
            return path[: -len(ext)]
    return path


def output_key(
    relpath: str,
    extension: str,
    *,
    sheet: str | None = None,
    partition: Sequence[tuple[str, str]] = (),
) -> str:
    """The output key for one table of one input, relative to the destination."""
    stem = safe_key(strip_input_extension(relpath))
    if sheet is not None:
        stem = f"{stem}/{safe_key(sheet)}"
    prefix = "/".join(f"{name}={value}" for name, value in partition)
    key = safe_key(f"{prefix}/{stem}{extension}" if prefix else f"{stem}{extension}")
    if f"{key.split('/', 1)[0]}/" in RESERVED_PREFIXES:  # a Drive folder named `_state`...
        key = f"~{key}"  # ...never writes into the bookkeeping
    return key


def raw_key(relpath: str) -> str:
    """Where ``keep_raw`` stores the original bytes."""
    return safe_key(f"{RAW_PREFIX}{safe_key(relpath)}")


def quarantine_key(run_id: str, relpath: str) -> str:
    """Where a failed input's original bytes go."""
    return safe_key(f"{QUARANTINE_PREFIX}{run_id}/{safe_key(relpath)}")


def is_reserved(key: str) -> bool:
    """True for bookkeeping keys (``_runs/``, ``_state/``, ...) at any depth."""
    parts = key.split("/")
    return any(f"{part}/" in RESERVED_PREFIXES for part in parts[:-1])


def folder_scope(folder_id: str) -> str:
    """The prefix a sync of ``folder_id`` (not the pipeline's folder) writes everything under:
    its outputs, state, manifests and locks, apart from the pipeline's own."""
    return f"{FOLDERS_PREFIX}{safe_key(folder_id)}/"


# ---- runs: the manifest, and a fanned-out run's bookkeeping beside it ----------------------
def run_key(run_id: str) -> str:
    """A run's manifest."""
    return f"{RUNS_PREFIX}{run_id}.json"


def run_dir(run_id: str) -> str:
    """The bookkeeping prefix of a fanned-out run."""
    return f"{RUNS_PREFIX}{run_id}/"


def plan_key(run_id: str) -> str:
    """Where the planner records what it enqueued."""
    return f"{run_dir(run_id)}plan.json"


def results_prefix(run_id: str) -> str:
    """Where item results are created."""
    return f"{run_dir(run_id)}items/"


def result_key(run_id: str, item_id: str) -> str:
    """The result of one work item."""
    return f"{results_prefix(run_id)}{item_id}.json"


def error_key(run_id: str, item_id: str) -> str:
    """The last crash of one work item (read when it is dead-lettered)."""
    return f"{run_dir(run_id)}errors/{item_id}.json"


def progress_key(run_id: str) -> str:
    """The progress aggregate: what polls have read of the item results so far."""
    return f"{run_dir(run_id)}progress.json"


# ---- state and event markers ------------------------------------------------------------------
def sync_state_key(pipeline: str) -> str:
    """A pipeline's incremental state document."""
    return f"{STATE_PREFIX}{pipeline}.json"


def _digest(dedupe_id: str) -> str:
    return hashlib.sha256(dedupe_id.encode()).hexdigest()


def event_marker_key(dedupe_id: str) -> str:
    """The marker recording that one storage event was processed."""
    return f"{STATE_PREFIX}events/{_digest(dedupe_id)}.json"


def attempt_marker_key(pipeline: str, input_key: str) -> str:
    """The marker of one input being processed (``input_key``: its state key), kept while it
    is: one left behind means the invocation died on it (:mod:`shared.run.attempts`)."""
    return f"{STATE_PREFIX}attempts/{safe_key(pipeline)}/{_digest(input_key)}.json"


# ---- leases: ``_locks/<name>/<epoch>.json`` ---------------------------------------------------
def sync_lock(pipeline: str) -> str:
    """The lease name that lets one sync of a pipeline run at a time."""
    return f"sync/{pipeline}"


def finalize_lock(run_id: str) -> str:
    """The lease name that elects a fanned-out run's one finalizer."""
    return f"finalize/{run_id}"


def event_lock(dedupe_id: str) -> str:
    """The lease name one delivery of a storage event holds while it processes the event."""
    return f"events/{_digest(dedupe_id)}"


def lock_prefix(name: str) -> str:
    """Where the epochs of the lease ``name`` live."""
    return f"{LOCKS_PREFIX}{name}/"


def lock_epoch_key(name: str, epoch: int) -> str:
    """One epoch object of the lease ``name`` (zero-padded, so keys sort by epoch)."""
    return f"{lock_prefix(name)}{epoch:0{EPOCH_DIGITS}d}.json"
