"""Benchmark: reading a big .xlsx with calamine vs openpyxl, through drivepipe's own reader.

    python -m bench.xlsx [--rows 200000] [--columns 10] [--repeat 1]

Generates (and caches) a sheet of ``rows`` x ``columns`` mixed cells (ints, floats, strings,
dates) with openpyxl's write-only mode, then reads it with ``read_table`` once per engine in a
fresh subprocess, so peak RSS is per engine. Prints both engines side by side, the ratio, and
the time of the sheet-extent guard that runs before either engine.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.transform import cache_dir

ENGINES = ("calamine", "openpyxl")


def generate_xlsx(rows: int, columns: int) -> Path:
    """Write the benchmark workbook (cached by shape)."""
    import datetime as dt

    from openpyxl import Workbook

    path = cache_dir() / f"sheet-{rows}x{columns}.xlsx"
    if path.exists():
        return path
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("data")
    sheet.append([f"col_{i}" for i in range(columns)])
    start = dt.date(2024, 1, 1)
    kinds = (
        lambda r: r,
        lambda r: r * 0.25,
        lambda r: f"item-{r % 997}",
        lambda r: start + dt.timedelta(days=r % 365),
    )
    for row in range(rows):
        sheet.append([kinds[i % len(kinds)](row + i) for i in range(columns)])
    partial = path.with_suffix(".partial")
    workbook.save(partial)
    partial.rename(path)
    return path


def child_main(source: Path, engine: str) -> None:
    """Read ``source`` with ``engine``; print a JSON line of figures."""
    from shared.transform.readers import ReadOptions, read_table
    from shared.transform.readers.excel import check_sheet_extents

    data = source.read_bytes()
    options = ReadOptions.model_validate({"excel": {"engine": engine}})
    began = time.perf_counter()
    check_sheet_extents(data, options.max_columns, options.excel.max_cells)
    guard = time.perf_counter() - began
    began = time.perf_counter()
    [table] = read_table(data, "xlsx", options)
    seconds = time.perf_counter() - began
    print(
        json.dumps(
            {
                "engine": engine,
                "seconds": seconds,
                "guard_seconds": guard,
                "rows": len(table.frame),
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def run_child(source: Path, engine: str) -> dict[str, Any]:
    """One engine in a fresh interpreter."""
    command = [sys.executable, "-m", "bench.xlsx", "--child", engine, "--input", str(source)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Print both engines' figures side by side."""
    parser = argparse.ArgumentParser(prog="python -m bench.xlsx")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--columns", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=1, help="best of N runs per engine")
    parser.add_argument("--child", choices=ENGINES, help=argparse.SUPPRESS)
    parser.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_main(args.input, args.child)
        return 0
    source = generate_xlsx(args.rows, args.columns)
    size_mb = source.stat().st_size / 1e6
    print(f"{args.rows:,} rows x {args.columns} columns, {size_mb:.1f} MB xlsx ({source})")
    best: dict[str, dict[str, Any]] = {}
    for engine in ENGINES:
        runs = [run_child(source, engine) for _ in range(args.repeat)]
        best[engine] = min(runs, key=lambda run: run["seconds"])
    print(f"{'engine':<10} {'seconds':>8} {'rows/s':>10} {'peak RSS':>9} {'guard':>7}")
    for engine, run in best.items():
        print(
            f"{engine:<10} {run['seconds']:>8.2f} {run['rows'] / run['seconds']:>10,.0f} "
            f"{run['peak_rss_mb']:>6.0f} MB {run['guard_seconds']:>6.2f}s"
        )
    ratio = best["openpyxl"]["seconds"] / best["calamine"]["seconds"]
    print(f"calamine is {ratio:.1f}x faster than openpyxl")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
