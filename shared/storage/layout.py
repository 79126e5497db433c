"""Every key drivepipe writes in a destination, built here and nowhere else.

Outputs, ``output.layout = "table"`` (the default; docs/tables.md says why)::

    <table>/[<key>=<value>/...]<path inside the Drive folder, "/" as "__", new extension>

one folder per table (``<pipeline>``, or ``<pipeline>__<sheet>`` for each sheet name), holding
nothing but Hive partition folders and that table's files, so Athena, BigQuery and DuckDB read
it as one table. ``output.layout = "files"`` keeps the older shape, ``<partition dirs>/<path
inside the Drive folder, extension replaced>``. Either way a re-run overwrites rather than
duplicates, and no file name can lead outside the destination prefix. Bookkeeping lives under
reserved prefixes, which no output uses::

    _runs/<run_id>.json                      the run's manifest
    _runs/<run_id>/plan.json                 a fanned-out run's plan
    _runs/<run_id>/items/<item_id>.json      one work item's result (created once)
    _runs/<run_id>/errors/<item_id>.json     one work item's last crash
    _runs/<run_id>/progress.json             what progress polls have read so far
    _runs/index/<view>/<inverted id>.json    a run's summary in one view of the run history
    _runs/index/origin.json                  the first indexed run (older ones: no index)
    _state/<pipeline>.json                   the pipeline's incremental state
    _state/events/<sha256>.json              one processed storage event
    _state/attempts/<pipeline>/<sha256>.json an input being processed (poison-pill marker)
    _state/channels/<pipeline>.json          the pipeline's Drive notification channel(s)
    _state/push/<pipeline>/requested.json    the last notification that asked for a sync
    _state/push/<pipeline>/done.json         the request the last finished sync covered
    _state/deferred/<pipeline>/<sha256>.json a request-file sync waiting for a running sync
    _schema/<pipeline>.json                  the pipeline's tables: columns, versions, history
    _schema/<pipeline>.catalog.json          what Glue / BigQuery were last told
    _locks/<lease name>/<epoch>.json         a lease's epochs (sync/, finalize/, events/, channels/,
                                             schema/)
    _quarantine/<run_id>/<path>              a failed input's original bytes
    _raw/<path>                              ``keep_raw`` copies
    _folders/<folder id>/...                 a sync of another folder than the pipeline's: its
                                             outputs and bookkeeping, laid out as above

An isolated run's rows sit under a ``_``-prefixed folder like the bookkeeping: reserved, so
no output key of the pipeline can reach them and no storage event they cause triggers work.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

from shared.storage import safe_key

RUNS_PREFIX = "_runs/"
STATE_PREFIX = "_state/"
LOCKS_PREFIX = "_locks/"
QUARANTINE_PREFIX = "_quarantine/"
RAW_PREFIX = "_raw/"
SCHEMA_PREFIX = "_schema/"
FOLDERS_PREFIX = "_folders/"
RESERVED_PREFIXES = (
    RUNS_PREFIX,
    STATE_PREFIX,
    QUARANTINE_PREFIX,
    RAW_PREFIX,
    LOCKS_PREFIX,
    SCHEMA_PREFIX,
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


# ---- tables: ``<table>/[<key>=<value>/...]<flat name><ext>`` ----------------------------------
TABLE_SEPARATOR = "__"  # a Drive folder in a file name, and a sheet in a table name (as dlt)
_SLUG = re.compile(r"[^a-z0-9]+")


def sheet_slug(sheet: str) -> str:
    """A sheet name as part of a table name: ``"Q1 Sales"`` → ``q1_sales`` (never empty)."""
    return _SLUG.sub("_", sheet.casefold()).strip("_") or "sheet"


def table_name(pipeline: str, sheet: str | None = None) -> str:
    """The table an output belongs to: the pipeline's, or ``<pipeline>__<sheet>`` per sheet."""
    return pipeline if sheet is None else f"{pipeline}{TABLE_SEPARATOR}{sheet_slug(sheet)}"


def table_dir(table: str) -> str:
    """The table's location under the destination: its files and nothing else."""
    return f"{safe_key(table)}/"


def flat_name(relpath: str) -> str:
    """``sales/2024/q1.csv`` → ``sales__2024__q1``: an output file name with no folders.

    Leading ``_`` and ``.`` go, since Hive and Athena skip such files as hidden while DuckDB
    and BigQuery read them. Two paths can flatten alike (``a/b`` and ``a__b``): the run's
    ownership rules (:mod:`shared.run.ownership`) give one of them a tagged name.
    """
    stem = safe_key(strip_input_extension(relpath))
    return stem.replace("/", TABLE_SEPARATOR).lstrip("_.") or "unnamed"


def table_output_key(
    table: str, relpath: str, extension: str, *, partition: Sequence[tuple[str, str]] = ()
) -> str:
    """The key of one input's output in ``table`` (``partition``: Hive folders, in order)."""
    folders = "".join(f"{name}={value}/" for name, value in partition)
    return safe_key(f"{table_dir(table)}{folders}{flat_name(relpath)}{extension}")


def is_table_output(key: str, pipeline: str, depth: int) -> bool:
    """True when ``key`` has the table layout's shape for ``pipeline`` with ``depth`` partition
    folders: ``<pipeline>[__<sheet>]/<k=v>/.../<file>``."""
    parts = key.split("/")
    if len(parts) != depth + 2:
        return False
    table = parts[0]
    if table != pipeline and not table.startswith(f"{pipeline}{TABLE_SEPARATOR}"):
        return False
    return all("=" in part for part in parts[1:-1])


def relocated_table_key(key: str, old_path: str, new_path: str) -> str | None:
    """``key``, a table output of ``old_path``, as ``new_path`` would name it (``None``: it was
    not named after ``old_path``)."""
    folder, _, leaf = key.rpartition("/")
    old = flat_name(old_path)
    if not leaf.startswith(old) or not leaf[len(old) :].startswith("."):
        return None
    return safe_key(f"{folder}/{flat_name(new_path)}{leaf[len(old) :]}")


def schema_key(pipeline: str) -> str:
    """A pipeline's schema document: its tables, their columns, versions and history."""
    return f"{SCHEMA_PREFIX}{safe_key(pipeline)}.json"


def catalog_state_key(pipeline: str) -> str:
    """What the pipeline's catalogs (Glue, BigQuery) were last told, per table."""
    return f"{SCHEMA_PREFIX}{safe_key(pipeline)}.catalog.json"


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


# ---- run history: index entries that list newest first (shared.run.history) ----------------
RUN_INDEX_PREFIX = f"{RUNS_PREFIX}index/"
# A run id's characters, each replaced so that ids sort in reverse: digits d -> 9-d, lower-case
# hex h -> f-h (``T``, ``Z`` and ``-`` stay). Both S3 and GCS list in lexicographic order.
_INVERT = str.maketrans("0123456789abcdef", "fedcba9876543210")
_INVERT_DIGITS = str.maketrans("0123456789", "9876543210")


def newest_first(run_id: str) -> str:
    """``20261122T001530Z-1a2b3c4d`` → ``79738877T998469Z-e5d4c3b2``: later ids sort first."""
    stamp, _, suffix = run_id.partition("-")
    return f"{stamp.translate(_INVERT_DIGITS)}-{suffix.translate(_INVERT)}"


def run_index_view(pipeline: str | None = None, status: str | None = None) -> str:
    """The prefix of one view of the history: all runs, one pipeline's, one status's, or both."""
    parts = [f"pipeline={safe_key(pipeline)}"] if pipeline else []
    parts += [f"status={status}" if status else "all"]  # never one view inside another
    return f"{RUN_INDEX_PREFIX}{'/'.join(parts)}/"


def run_index_key(view: str, run_id: str) -> str:
    """The entry of ``run_id`` in the view whose prefix is ``view``."""
    return f"{view}{newest_first(run_id)}.json"


def run_id_of_index_key(key: str) -> str:
    """The run id an index entry's key stands for (:func:`newest_first` is its own inverse)."""
    return newest_first(key.rsplit("/", 1)[-1].removesuffix(".json"))


def run_index_origin_key() -> str:
    """Names the first run written with an index: manifests before it may have none."""
    return f"{RUN_INDEX_PREFIX}origin.json"


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


# ---- Drive push notifications (shared.run.channels, shared.run.pending) ----------------------
def channel_key(pipeline: str) -> str:
    """The pipeline's notification channel record (ids, expiry, token reference; no token)."""
    return f"{STATE_PREFIX}channels/{safe_key(pipeline)}.json"


def push_requested_key(pipeline: str) -> str:
    """What the last accepted notification asked for (overwritten by each one)."""
    return f"{STATE_PREFIX}push/{safe_key(pipeline)}/requested.json"


def push_done_key(pipeline: str) -> str:
    """The request a finished sync covered: requested != done means a sync is owed."""
    return f"{STATE_PREFIX}push/{safe_key(pipeline)}/done.json"


# ---- request files deferred behind a running sync (shared.run.deferred) ---------------------
def deferred_prefix(pipeline: str) -> str:
    """Where a pipeline's deferred request-file syncs wait (:mod:`shared.run.deferred`)."""
    return f"{STATE_PREFIX}deferred/{safe_key(pipeline)}/"


def deferred_key(pipeline: str, dedupe_id: str) -> str:
    """One deferred request-file sync, named by the storage event that asked for it."""
    return f"{deferred_prefix(pipeline)}{_digest(dedupe_id)}.json"


# ---- leases: ``_locks/<name>/<epoch>.json`` ---------------------------------------------------
def sync_lock(pipeline: str) -> str:
    """The lease name that lets one sync of a pipeline run at a time."""
    return f"sync/{pipeline}"


def schema_lock(pipeline: str) -> str:
    """The lease that serializes changes to a pipeline's schema (and the rewrites they need)."""
    return f"schema/{pipeline}"


def finalize_lock(run_id: str) -> str:
    """The lease name that elects a fanned-out run's one finalizer."""
    return f"finalize/{run_id}"


def channel_lock(pipeline: str) -> str:
    """The lease name held while a pipeline's notification channel is opened or closed."""
    return f"channels/{pipeline}"


def event_lock(dedupe_id: str) -> str:
    """The lease name one delivery of a storage event holds while it processes the event."""
    return f"events/{_digest(dedupe_id)}"


def lock_prefix(name: str) -> str:
    """Where the epochs of the lease ``name`` live."""
    return f"{LOCKS_PREFIX}{name}/"


def lock_epoch_key(name: str, epoch: int) -> str:
    """One epoch object of the lease ``name`` (zero-padded, so keys sort by epoch)."""
    return f"{lock_prefix(name)}{epoch:0{EPOCH_DIGITS}d}.json"
