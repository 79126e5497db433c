"""The reliability campaign: faults, duplicates, overlap, load and bad input, with figures.

    python -m bench.campaign            # short mode (CI): small sizes, about a minute
    python -m bench.campaign --full     # 10,000 files, 200 events, a 1 GB CSV
    python -m bench.campaign --only "many small files" --json

Each scenario runs in a fresh child process (so its peak memory is its own) and prints one
row: | scenario | inputs | written | failed as expected | lost | duplicates | peak memory |
time |. ``lost`` and ``duplicates`` must be 0; the exit code is 1 when any is not, or when a
scenario crashes.
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
from dataclasses import asdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
COLUMNS = (
    "scenario",
    "inputs",
    "written",
    "failed as expected",
    "lost",
    "duplicates",
    "peak memory",
    "time",
)


def run_one(name: str, full: bool) -> dict[str, Any]:
    """Run one scenario in this process; its counts, seconds and peak RSS (MB)."""
    import logging

    from bench.campaign_scenarios import SCENARIOS, Sizes

    logging.getLogger("drivepipe").setLevel(logging.ERROR)  # failed inputs are expected here
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="campaign-work-") as work:
        outcome = SCENARIOS[name](Sizes.pick(full), Path(work))
    seconds = time.monotonic() - started
    peak_kb = max(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    )
    return {"scenario": name, **asdict(outcome), "seconds": seconds, "peak_mb": peak_kb / 1024}


def run_in_child(name: str, full: bool, timeout: float) -> dict[str, Any]:
    """Run one scenario in a fresh interpreter; a crash becomes a row with ``error`` set."""
    command = [sys.executable, "-m", "bench.campaign", "--child", name]
    if full:
        command.append("--full")
    started = time.monotonic()
    try:
        proc = subprocess.run(
            command, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return _crashed(name, f"timed out after {timeout:.0f} s", started)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return _crashed(name, (proc.stderr or proc.stdout).strip()[-600:], started)
    return json.loads(lines[-1])


def _crashed(name: str, error: str, started: float) -> dict[str, Any]:
    return {
        "scenario": name,
        "inputs": 0,
        "written": 0,
        "failed_expected": 0,
        "lost": 1,
        "duplicates": 0,
        "note": "",
        "error": error,
        "seconds": time.monotonic() - started,
        "peak_mb": 0.0,
    }


def table(rows: list[dict[str, Any]]) -> str:
    """The results as a Markdown table (notes and errors listed under it)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        cells = [
            r["scenario"],
            str(r["inputs"]),
            str(r["written"]),
            str(r["failed_expected"]),
            str(r["lost"]),
            str(r["duplicates"]),
            f"{r['peak_mb']:.0f} MB",
            f"{r['seconds']:.1f} s",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    notes = [
        f"- {r['scenario']}: {r.get('error') or r['note']}"
        for r in rows
        if r.get("error") or r["note"]
    ]
    return "\n".join(lines + (["", *notes] if notes else []))


def main(argv: list[str] | None = None) -> int:
    """Run the campaign and print its table; 1 when anything was lost or duplicated."""
    from bench.campaign_scenarios import MOTO_PORT_ENV, SCENARIOS
    from devstack.servers import MotoServer

    parser = argparse.ArgumentParser(prog="python -m bench.campaign", description=__doc__)
    parser.add_argument("--full", action="store_true", help="full sizes (slow)")
    parser.add_argument("--only", action="append", default=[], help="run only these scenarios")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON too")
    parser.add_argument("--timeout", type=float, default=None, help="per-scenario limit (s)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_one(args.child, args.full)))
        return 0
    unknown = [n for n in args.only if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenarios {unknown}; choose from {list(SCENARIOS)}")
    names = args.only or list(SCENARIOS)
    timeout = args.timeout or (1800.0 if args.full else 180.0)
    mode = "full" if args.full else "short"
    print(f"drivepipe reliability campaign ({mode} mode, {len(names)} scenarios)", flush=True)
    rows = []
    with MotoServer() as moto:  # one moto_server for every scenario that needs S3
        os.environ[MOTO_PORT_ENV] = str(moto.port)
        try:
            for name in names:
                rows.append(run_in_child(name, args.full, timeout))
                r = rows[-1]
                status = "ok" if not (r["lost"] or r["duplicates"]) else "FAILED"
                print(f"  {status:<6} {name} ({r['seconds']:.1f} s)", file=sys.stderr, flush=True)
        finally:
            os.environ.pop(MOTO_PORT_ENV, None)
    print(table(rows))
    if args.json:
        print(json.dumps(rows, indent=2))
    bad = [r for r in rows if r["lost"] or r["duplicates"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
