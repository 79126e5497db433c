"""Benchmark: peak memory of the real pipeline code path against input size (streaming).

    python -m bench.memory [--sizes 100,500,2000] [--in-memory-mb 100] [--steps rows|groupby]

For each size it generates (and caches, like bench/transform.py) a sales CSV, then runs
``shared.run.process.process_input`` on it in a fresh subprocess with a local destination,
forcing the streaming path, and prints the child's peak RSS, MB/s and CPU seconds. The
in-memory path runs once at ``--in-memory-mb`` for comparison. Target: peak RSS roughly flat
and under 600 MB at 2 GB, so the job fits a 1 GB function.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.transform import DERIVE_EXPR, FILTER_EXPR, generate_csv

STEP_SETS: dict[str, list[dict[str, Any]]] = {
    "rows": [
        {"op": "normalize_columns"},
        {"op": "filter", "expr": FILTER_EXPR},
        {"op": "derive", "column": "revenue", "expr": DERIVE_EXPR},
        {"op": "cast", "columns": {"units": "float64"}},
    ],
    "groupby": [
        {"op": "filter", "expr": FILTER_EXPR},
        {"op": "derive", "column": "revenue", "expr": DERIVE_EXPR},
        {
            "op": "groupby",
            "by": ["region", "product"],
            "aggs": {"revenue": ["revenue", "sum"], "orders": ["id", "count"]},
        },
    ],
}


def child_main(source: Path, out_dir: Path, stream: bool, steps: str) -> None:
    """Run one input through process_input; print a JSON line of figures."""
    import pandas  # noqa: F401 - imported up front so "import MB" is the fixed baseline
    import pyarrow.csv
    import pyarrow.parquet  # noqa: F401

    from shared.config import parse_config
    from shared.run.manifest import InputRecord
    from shared.run.process import process_input
    from shared.storage import open_storage

    baseline_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    pipeline = parse_config(
        {
            "pipelines": {
                "bench": {
                    "steps": STEP_SETS[steps],
                    "output": {"url": str(out_dir)},
                    "streaming": {"threshold_mb": 0 if stream else 1_000_000},
                }
            }
        }
    ).pipelines["bench"]
    dest = open_storage(str(out_dir))
    record = InputRecord(source_id="bench", path=source.name)
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    with source.open("rb") as data:
        process_input(pipeline, dest, data, "csv", record, "bench")
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    if record.status != "written":
        raise SystemExit(f"input failed: {record.error}")
    print(
        json.dumps(
            {
                "seconds": seconds,
                "cpu_seconds": (after.ru_utime - before.ru_utime)
                + (after.ru_stime - before.ru_stime),
                "peak_rss_mb": after.ru_maxrss / 1024,
                "baseline_rss_mb": baseline_mb,
                "rows_in": record.rows_in,
                "rows_out": record.rows_out,
                "output_mb": record.bytes_out / 1e6,
            }
        )
    )


def run_child(source: Path, stream: bool, steps: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="drivepipe-bench-mem-") as out:
        command = [
            sys.executable, "-m", "bench.memory", "--child", "--input", str(source),
            "--output", out, "--steps", steps, *(["--stream"] if stream else []),
        ]  # fmt: skip
        completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise SystemExit(f"child failed on {source}:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,500,2000", help="CSV sizes in MB, streamed")
    parser.add_argument("--in-memory-mb", type=float, default=100, help="0 to skip")
    parser.add_argument("--steps", choices=sorted(STEP_SETS), default="rows")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--stream", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_main(args.input, args.output, args.stream, args.steps)
        return

    runs: list[tuple[str, float, dict[str, Any]]] = []
    if args.in_memory_mb:
        source = generate_csv(args.in_memory_mb, None, args.seed)
        runs.append(
            ("in-memory", source.stat().st_size / 1e6, run_child(source, False, args.steps))
        )
        print_row(*runs[-1], header=True)
    for size in (float(s) for s in args.sizes.split(",")):
        source = generate_csv(size, None, args.seed)
        runs.append(("streaming", source.stat().st_size / 1e6, run_child(source, True, args.steps)))
        print_row(*runs[-1], header=len(runs) == 1)
    streamed = [(mb, r) for path, mb, r in runs if path == "streaming"]
    if streamed:
        (small_mb, small), (big_mb, big) = streamed[0], streamed[-1]
        print(
            f"\nstreaming: input grew {big_mb / small_mb:.1f}x, peak RSS grew "
            f"{big['peak_rss_mb'] / small['peak_rss_mb']:.2f}x; largest peak "
            f"{big['peak_rss_mb']:.0f} MB (target < 600 MB)"
        )
    memory = [(mb, r) for path, mb, r in runs if path == "in-memory"]
    same = [r for mb, r in streamed if memory and abs(mb - memory[0][0]) < 1]
    if memory and same:
        print(
            f"at {memory[0][0]:.0f} MB the in-memory path peaks at "
            f"{memory[0][1]['peak_rss_mb']:.0f} MB, streaming at {same[0]['peak_rss_mb']:.0f} MB "
            f"({memory[0][1]['peak_rss_mb'] / same[0]['peak_rss_mb']:.1f}x)"
        )
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; steps: {args.steps}")


def print_row(path: str, size_mb: float, result: dict[str, Any], *, header: bool) -> None:
    if header:
        print(
            f"{'path':<10} {'input MB':>9} {'seconds':>8} {'MB/s':>7} {'cpu s':>7} "
            f"{'peak RSS MB':>12} {'import MB':>10} {'rows in':>11} {'rows out':>11}"
        )
    print(
        f"{path:<10} {size_mb:>9.0f} {result['seconds']:>8.1f} "
        f"{size_mb / result['seconds']:>7.1f} {result['cpu_seconds']:>7.1f} "
        f"{result['peak_rss_mb']:>12.0f} {result['baseline_rss_mb']:>10.0f} "
        f"{result['rows_in']:>11} {result['rows_out']:>11}",
        flush=True,
    )


if __name__ == "__main__":
    main()
