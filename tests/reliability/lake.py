"""Reading a destination back and comparing it, row by row, with what Drive holds.

Shared by the reliability tests and ``bench.campaign``. Every source row carries a tag naming
its input (a ``file`` column), so each row found in the lake can be put to its input:

- an input is **lost** when any of its rows is missing (or holds other values: the right row
  is then missing and a wrong one appears);
- it is **duplicated** when any of its rows appears more than once, at any key;
- a row no current input has (a stale output, a wrong value) is **unexpected**;
- the state must not claim a missing object (:func:`tests.reliability.helpers.missing_outputs`).

The same count for every scenario, whatever drove the run.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from shared.storage import Storage, layout
from shared.storage.local import TEMP_PREFIX
from shared.transform.tables.options import LINEAGE_COLUMNS
from tests.reliability.helpers import missing_outputs

Row = tuple[str, ...]
TAG = "file"  # the column every generated source row names its input in


@dataclass
class Audit:
    """What a destination holds compared with the expected rows of each input."""

    inputs: int
    correct: int = 0  # every row present exactly once
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    unexpected_rows: int = 0
    unreadable: list[str] = field(default_factory=list)  # outputs that do not parse
    missing_claims: list[str] = field(default_factory=list)  # state entries without objects

    @property
    def ok(self) -> bool:
        """Nothing lost, duplicated, stale, unreadable or falsely claimed."""
        return not (
            self.lost
            or self.duplicated
            or self.unexpected_rows
            or self.unreadable
            or self.missing_claims
        )

    def summary(self) -> str:
        """One line for a test failure or a campaign note."""
        parts = [f"{self.correct}/{self.inputs} inputs exact"]
        for name in ("lost", "duplicated", "unreadable", "missing_claims"):
            items = getattr(self, name)
            if items:
                parts.append(f"{name}: {sorted(items)[:5]}")
        if self.unexpected_rows:
            parts.append(f"{self.unexpected_rows} unexpected rows")
        return "; ".join(parts)


def frame_rows(frame: pd.DataFrame) -> list[Row]:
    """The rows of ``frame`` as tuples of strings (column order as written), without the
    table layout's lineage columns (``_drive_id``...: the output's, not the source row's)."""
    frame = frame.drop(columns=[c for c in LINEAGE_COLUMNS if c in frame.columns])
    return [tuple(str(v) for v in row) for row in frame.itertuples(index=False, name=None)]


def read_output(data: bytes, key: str) -> pd.DataFrame:
    """An output object parsed by its extension (parquet, csv, jsonl; ``.gz`` too)."""
    name = key.removesuffix(".gz")
    compression = "gzip" if key.endswith(".gz") else None
    if name.endswith(".parquet"):
        return pd.read_parquet(io.BytesIO(data))
    if name.endswith(".csv"):
        return pd.read_csv(io.BytesIO(data), compression=compression, dtype=str)
    if name.endswith(".jsonl"):
        return pd.read_json(io.BytesIO(data), lines=True, compression=compression, dtype=False)
    raise ValueError(f"not an output format: {key}")


def output_keys(dest: Storage) -> list[str]:
    """Every object outside the bookkeeping prefixes."""
    return [o.key for o in dest.list() if not layout.is_reserved(o.key) and o.key[:1] != "_"]


def lake_rows(dest: Storage) -> tuple[Counter[Row], list[str]]:
    """Every row of every output in ``dest`` (all columns as strings), and unreadable keys."""
    rows: Counter[Row] = Counter()
    unreadable = []
    for key in output_keys(dest):
        try:
            frame = read_output(dest.read(key), key)
        except Exception:  # a partial or foreign object at a final key: say which
            unreadable.append(key)
            continue
        # A column the table gained after this file's input was read (another input added
        # it: schema evolution) holds nothing here; it is not part of this input's rows.
        frame = frame.loc[:, frame.notna().any(axis=0) | (len(frame) == 0)]
        rows.update(frame_rows(frame.astype(str)))
    return rows, unreadable


def audit(dest: Storage, expected: Mapping[str, Iterable[Row]], pipeline: str = "rel") -> Audit:
    """Compare every output in ``dest`` with ``expected`` (input name → its rows)."""
    found, unreadable = lake_rows(dest)
    result = Audit(inputs=len(expected), unreadable=unreadable)
    result.missing_claims = missing_outputs(dest, pipeline)
    owner: dict[Row, str] = {}
    for name, rows in expected.items():
        wanted = Counter(rows)
        for row in wanted:
            owner[row] = name
        missing = any(found[row] < count for row, count in wanted.items())
        extra = any(found[row] > count for row, count in wanted.items())
        if missing:
            result.lost.append(name)
        if extra:
            result.duplicated.append(name)
        if not (missing or extra):
            result.correct += 1
    result.unexpected_rows = sum(n for row, n in found.items() if row not in owner)
    return result


def tagged_rows(tag: str, count: int, pad: str = "") -> list[Row]:
    """The rows :func:`write_tagged_csv` writes for ``tag``: (tag, i), or (tag, i, pad)."""
    return [(tag, str(i), pad) if pad else (tag, str(i)) for i in range(count)]


def write_tagged_csv(path: Path, tag: str, count: int, pad: str = "") -> list[Row]:
    """A CSV ``file,row`` (``file,row,pad`` with ``pad``) whose rows name ``tag``; its rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = tagged_rows(tag, count, pad)
    header = "file,row,pad" if pad else "file,row"
    path.write_text(header + "\n" + "".join(",".join(row) + "\n" for row in rows))
    return rows


def leftover_temp_files(root: Path) -> list[str]:
    """``.drivepipe-tmp-*`` files under a local destination (a killed writer's)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob(f"{TEMP_PREFIX}*"))
