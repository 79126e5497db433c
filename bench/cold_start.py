"""Benchmark: cold-import time of each cloud's entry module, and the lazy cost of a first run.

    python -m bench.cold_start [--runs 5]

For ``chalice_app/app.py`` (AWS Lambda) and ``gcp_functions/main.py`` (Cloud Functions) it
starts --runs fresh interpreters and reports medians of: process start to ready (interpreter
start + import of the entry module), the import alone, and the imports a first sync or
upload then pays (``shared.run.process`` + pandas + pyarrow + the cloud's storage SDK), which the
handlers load lazily. It also checks that no heavy package is loaded by the import and
names the largest direct imports (from ``python -X importtime``). Exits 1 if an entry
module loads a heavy package (pandas, numpy, pyarrow, openpyxl, boto3, google.cloud.storage).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("pandas", "numpy", "pyarrow", "openpyxl", "boto3", "botocore", "google.cloud.storage")
# Just enough configuration for the bundled drivepipe.toml files and the Chalice auth check.
ENV = {
    "DRIVEPIPE_HTTP_AUTH": "iam",
    "DRIVEPIPE_INPUT_BUCKET": "in-bucket",
    "DRIVEPIPE_OUTPUT_BUCKET": "out-bucket",
    "DRIVEPIPE_SCHEDULE": "rate(1 hour)",
    "DRIVE_FOLDER_ID": "bench-folder",
}

CHILD = """
import json, sys, time
t0 = time.perf_counter()
import {module}
t1 = time.perf_counter()
loaded = [name for name in {heavy!r} if name in sys.modules]
import shared.run.process, pandas, pyarrow, {storage}
t2 = time.perf_counter()
print(json.dumps({{"import": t1 - t0, "first_run": t2 - t1, "heavy": loaded}}))
"""


@dataclass(frozen=True)
class Entry:
    """One cloud's entry module: where it lives and the storage SDK its first run loads."""

    label: str
    directory: Path
    module: str
    storage: str


ENTRIES = (
    Entry("AWS  chalice_app/app.py", REPO / "chalice_app", "app", "boto3"),
    Entry("GCP  gcp_functions/main.py", REPO / "gcp_functions", "main", "google.cloud.storage"),
)


def run_once(entry: Entry) -> dict[str, object]:
    """One fresh interpreter: wall time to ready, import time, first-run imports."""
    code = CHILD.format(module=entry.module, heavy=HEAVY, storage=entry.storage)
    env = {**os.environ, **ENV, "PYTHONPATH": f"{entry.directory}{os.pathsep}{REPO}"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=entry.directory, env=env, capture_output=True,
        text=True, check=False,
    )  # fmt: skip
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{entry.label}: the child failed:\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # Interpreter start + entry import, without the first-run imports that followed.
    result["ready"] = wall - float(result["first_run"])
    return result


def largest_imports(entry: Entry, top: int = 5) -> list[tuple[str, float]]:
    """The ``top`` direct imports of the entry module by cumulative time (ms)."""
    env = {**os.environ, **ENV, "PYTHONPATH": f"{entry.directory}{os.pathsep}{REPO}"}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {entry.module}"],
        cwd=entry.directory, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    found: list[tuple[str, float]] = []
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \| ( *)(\S+)", line)
        if match and len(match.group(2)) == 2:  # imported by the entry module itself
            found.append((match.group(3), int(match.group(1)) / 1000))
    return sorted(found, key=lambda item: -item[1])[:top]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per entry")
    args = parser.parse_args(argv)
    print(f"median of {args.runs} fresh processes each; times in ms\n")
    eager: list[str] = []
    for entry in ENTRIES:
        runs = [run_once(entry) for _ in range(args.runs)]
        ready = statistics.median(float(r["ready"]) * 1000 for r in runs)
        imported = statistics.median(float(r["import"]) * 1000 for r in runs)
        first = statistics.median(float(r["first_run"]) * 1000 for r in runs)
        heavy = sorted({name for r in runs for name in r["heavy"]})  # type: ignore[attr-defined]
        print(f"{entry.label}")
        print(f"  process start to ready      {ready:7.0f}")
        print(f"  import {entry.module:<21}{imported:7.0f}")
        print(
            f"  first run's lazy imports    {first:7.0f}   "
            f"(shared.run.process, pandas, pyarrow, {entry.storage})"
        )
        print(f"  heavy packages loaded by the import: {', '.join(heavy) or 'none'}")
        eager += [f"{entry.label.split()[1]}: {name}" for name in heavy]
        largest = ", ".join(f"{name} {ms:.0f}" for name, ms in largest_imports(entry))
        print(f"  largest imports (one -X importtime run): {largest}\n")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"cpus {os.cpu_count()}, load average {load:.1f}, python {sys.version.split()[0]}")
    if eager:
        print(f"FAIL: loaded at import time: {', '.join(eager)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
