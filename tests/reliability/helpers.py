"""Checks shared by the reliability tests and the campaign runner (bench/campaign.py)."""

from __future__ import annotations

import json
from typing import Any

from shared.errors import StorageNotFound
from shared.storage import Storage
from shared.storage.layout import RUNS_PREFIX, sync_state_key


def toml_dumps(data: dict[str, Any]) -> str:
    """A small TOML writer for test configs: tables of scalars, lists and inline tables."""
    lines: list[str] = []

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list | tuple):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{json.dumps(k)} = {value(x)}" for k, x in v.items()) + "}"
        raise TypeError(f"cannot write {type(v).__name__} as TOML")

    def table(path: list[str], body: dict[str, Any]) -> None:
        scalars = {k: v for k, v in body.items() if not isinstance(v, dict)}
        if path:
            lines.append("[" + ".".join(json.dumps(p) for p in path) + "]")
        lines.extend(f"{json.dumps(k)} = {value(v)}" for k, v in scalars.items())
        for k, v in body.items():
            if isinstance(v, dict):
                table([*path, k], v)

    table([], data)
    return "\n".join(lines) + "\n"


def state_entries(dest: Storage, pipeline: str) -> dict[str, Any]:
    """The raw ``inputs`` of a pipeline's state document ({} when there is none)."""
    try:
        return json.loads(dest.read(sync_state_key(pipeline)))["inputs"]
    except StorageNotFound:
        return {}


def missing_outputs(dest: Storage, pipeline: str) -> list[str]:
    """Output keys the state claims but the destination lacks (must always be empty)."""
    missing = []
    for entry in state_entries(dest, pipeline).values():
        keys = entry["output_keys"] if not entry.get("error") else [entry["quarantine_key"]]
        missing.extend(k for k in keys if k and not dest.exists(k))
    return missing


def manifests(dest: Storage) -> list[dict[str, Any]]:
    """Every stored run manifest (``_runs/<run id>.json``, not the history index), oldest first."""
    return [
        json.loads(dest.read(o.key))
        for o in dest.list(RUNS_PREFIX)
        if "/" not in o.key[len(RUNS_PREFIX) :]
    ]


def data_keys(dest: Storage) -> list[str]:
    """Keys outside the bookkeeping prefixes (the outputs)."""
    return [o.key for o in dest.list() if not o.key.startswith("_")]
