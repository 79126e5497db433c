"""Deterministic, safe output keys.

The output key of an input is ``<partition dirs>/<path inside the Drive folder, extension
replaced by the output format>``, so a re-run overwrites rather than duplicates, and no file
name can lead outside the destination prefix.
"""

from __future__ import annotations

from collections.abc import Sequence

from shared.storage import safe_key

RESERVED_PREFIXES = ("_runs/", "_state/", "_quarantine/", "_raw/", "_locks/")
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
    key = f"{prefix}/{stem}{extension}" if prefix else f"{stem}{extension}"
    return safe_key(key)


def raw_key(relpath: str) -> str:
    """Where ``keep_raw`` stores the original bytes."""
    return safe_key(f"_raw/{safe_key(relpath)}")


def quarantine_key(run_id: str, relpath: str) -> str:
    """Where a failed input's original bytes go."""
    return safe_key(f"_quarantine/{run_id}/{safe_key(relpath)}")


def is_reserved(key: str) -> bool:
    """True for bookkeeping keys (``_runs/``, ``_state/``, ...) at any depth."""
    parts = key.split("/")
    return any(f"{part}/" in RESERVED_PREFIXES for part in parts[:-1])
