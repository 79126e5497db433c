"""Benchmark: what a widening costs, per GB of a table's existing Parquet outputs.

    python -m bench.tables [--mb 200] [--files 20] [--url DIR_OR_BUCKET] [--seed 7]

Writes a table of ``--files`` Parquet files (``--mb`` MB in all, sales-like rows, lineage
columns included) the way drivepipe writes them, then widens one column (``price``, int64 →
float64) through the schema store, exactly as an input that brings fractional prices does: the
new schema is saved under the schema lease and every file of the table is rewritten to it,
Parquet to Parquet (read, cast, write; nothing fetched from Drive again). Prints the rewrite's
wall and CPU time, seconds per GB of existing outputs, and how it compares with writing the
same outputs in the first place. The default is a local directory (the rewrite's own cost);
``--url s3://...`` (with AWS_ENDPOINT_URL for moto server) adds the storage round trips.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from typing import Any

import numpy as np
import pyarrow as pa

from shared.run.tables.store import SchemaDoc, SchemaStore
from shared.storage import layout, open_storage
from shared.transform.tables.conform import Lineage, conform, parquet_bytes
from shared.transform.tables.options import SchemaOptions
from shared.transform.tables.schema import reconcile

REGIONS = np.array(["EU", "US", "APAC", "LATAM"])
BYTES_PER_ROW = 7.2  # measured: snappy-compressed, lineage columns included


def sales(rows: int, rng: np.random.Generator) -> pa.Table:
    return pa.table(
        {
            "id": np.arange(rows),
            "price": rng.integers(1, 500, rows),
            "units": rng.integers(1, 50, rows),
            "region": rng.choice(REGIONS, rows),
            "note": rng.choice(np.array(["", "ok", "late delivery", "gift wrap"]), rows),
        }
    )


def build(url: str, mb: float, files: int, seed: int) -> tuple[SchemaStore, float, int]:
    """The table at v1: its files written, the schema saved. (store, seconds, bytes)."""
    rng = np.random.default_rng(seed)
    dest = open_storage(url)
    store = SchemaStore(dest, "bench")
    rows = max(1, int(mb * 1e6 / BYTES_PER_ROW / files))
    first = sales(10, rng)
    observed = [
        (f.name, "int64" if pa.types.is_integer(f.type) else "string") for f in first.schema
    ]
    table = reconcile(None, "bench", observed, SchemaOptions()).table
    started, total = time.perf_counter(), 0
    for n in range(files):
        lineage = Lineage(f"id{n:04d}", f"folder/file{n:04d}.csv", "2024-05-01T10:00:00Z")
        body = parquet_bytes(conform(sales(rows, rng), table, lineage), None)
        dest.write(layout.table_output_key("bench", f"folder/file{n:04d}.csv", ".parquet"), body)
        total += len(body)
    dest.write(store.key, SchemaDoc("bench", {"bench": table}, 1).to_json())
    return store, time.perf_counter() - started, total


def widen(store: SchemaStore) -> dict[str, Any]:
    """Widen ``price`` to float64 through the store: the change and the rewrite pass."""

    def apply(doc: SchemaDoc) -> dict[str, Any]:
        current = doc.tables["bench"]
        outcome = reconcile(current, "bench", [("price", "float64")], SchemaOptions())
        return {"bench": outcome.table}

    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    store.change(apply)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"seconds": seconds, "cpu_seconds": cpu, "peak_rss_mb": after.ru_maxrss / 1024}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=200, help="size of the existing outputs")
    parser.add_argument("--files", type=int, default=20, help="how many files they are")
    parser.add_argument("--url", help="where the table lives (default: a temporary directory)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="drivepipe-bench-tables-") as scratch:
        url = args.url or os.path.join(scratch, "lake")
        store, write_seconds, size = build(url, args.mb, args.files, args.seed)
        result = widen(store)
        version = store.read().tables["bench"].version
    gb = size / 1e9
    print(f"table: {args.files} Parquet files, {size / 1e6:.1f} MB at {url}")
    print(
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; "
        "wall-clock figures are noisy on a shared machine"
    )
    print(f"written first in {write_seconds:.2f} s ({size / 1e6 / write_seconds:.1f} MB/s)")
    print(
        f"widening price int64 → float64 (schema v{version}): rewrote {size / 1e6:.1f} MB in "
        f"{result['seconds']:.2f} s wall, {result['cpu_seconds']:.2f} s CPU, peak RSS "
        f"{result['peak_rss_mb']:.0f} MB"
    )
    print(
        f"per GB of existing outputs: {result['seconds'] / gb:.1f} s wall, "
        f"{result['cpu_seconds'] / gb:.1f} s CPU; {result['seconds'] / write_seconds:.2f}x the "
        "time it took to write them"
    )


if __name__ == "__main__":
    main()
