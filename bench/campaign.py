"""The reliability campaign: faults, kills, duplicates, overlap, hostile input and callers, load.

    python -m bench.campaign                      # short mode (CI), local + kills on all backends
    python -m bench.campaign --full --backend all # every scenario on local, S3 and GCS
    python -m bench.campaign --only "colliding names" --backend s3 --json

Each (scenario, backend) runs in a fresh child process (so its peak memory is its own) and
prints one row: | scenario | backend | inputs | written | failed as expected | lost |
duplicated | stale rows | leftovers | peak memory | time |. Every row counts inputs by reading
every output back (:mod:`bench.campaign_core`). ``lost``, ``duplicated`` and ``stale rows``
must be 0 and no check may fail: the exit code is 1 otherwise, or when a scenario crashes or
times out. ``leftovers`` (temp files, open multipart uploads a killed writer left; ``n/a``
where they cannot be listed) is reported, not judged.
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
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
COLUMNS = (
    "scenario",
    "backend",
    "inputs",
    "written",
    "failed as expected",
    "lost",
    "duplicated",
    "stale rows",
    "leftovers",
    "peak memory",
    "time",
)
KILL_SCENARIO = "kill -9 at crash points + re-run"


def run_one(name: str, backend: str, full: bool) -> dict[str, Any]:
    """Run one scenario in this process; its counts, seconds and peak RSS (MB)."""
    import logging

    from bench.campaign_core import Sizes
    from bench.campaign_scenarios import SCENARIOS

    logging.getLogger("drivepipe").setLevel(logging.ERROR)  # failed inputs are expected here
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="campaign-work-") as work:
        outcome = SCENARIOS[name][0](Sizes.pick(full), Path(work), backend)
    seconds = time.monotonic() - started
    row = {"scenario": name, "backend": backend, **asdict(outcome)}
    return {**row, "seconds": seconds, "peak_mb": own_peak_kb() / 1024}


def own_peak_kb() -> int:
    """This process' peak RSS in KB: ``VmHWM``, the high-water mark of its own memory.

    Not ``getrusage``: on Linux a forked child starts with its parent's ``ru_maxrss`` and
    keeps it across ``exec``, so a row run from a 600 MB pytest worker read 606 MB whatever
    it used. (The processes a row starts, such as the kill rows' ``drivepipe sync``, are not
    counted: their ``ru_maxrss`` carries the same inheritance.)
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # not Linux: the best there is


def run_in_child(name: str, backend: str, full: bool, timeout: float) -> dict[str, Any]:
    """Run one scenario in a fresh interpreter; a crash becomes a row with ``error`` set."""
    command = [sys.executable, "-m", "bench.campaign", "--child", name, "--backend", backend]
    if full:
        command.append("--full")
    started = time.monotonic()
    try:
        proc = subprocess.run(
            command, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return _crashed(name, backend, f"timed out after {timeout:.0f} s", started)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        said = (proc.stderr or proc.stdout).strip()[-600:]
        return _crashed(name, backend, f"exit code {proc.returncode}: {said}", started)
    row: dict[str, Any] = json.loads(lines[-1])
    return row


def _crashed(name: str, backend: str, error: str, started: float) -> dict[str, Any]:
    return {
        "scenario": name,
        "backend": backend,
        "inputs": 0,
        "written": 0,
        "failed_expected": 0,
        "lost": 0,
        "duplicates": 0,
        "stale": 0,
        "leftovers": None,
        "note": "",
        "problems": [],
        "error": error,
        "seconds": time.monotonic() - started,
        "peak_mb": 0.0,
    }


def failed(row: dict[str, Any]) -> bool:
    """True when the row lost, duplicated or left stale anything, a check failed, or it crashed."""
    return bool(
        row.get("error") or row["lost"] or row["duplicates"] or row["stale"] or row["problems"]
    )


def table(rows: list[dict[str, Any]]) -> str:
    """The results as a Markdown table (notes, failed checks and errors listed under it)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        cells = [
            r["scenario"],
            r["backend"],
            str(r["inputs"]),
            str(r["written"]),
            str(r["failed_expected"]),
            str(r["lost"]),
            str(r["duplicates"]),
            str(r["stale"]),
            "n/a" if r["leftovers"] is None else str(r["leftovers"]),
            f"{r['peak_mb']:.0f} MB",
            f"{r['seconds']:.1f} s",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    notes = []
    for r in rows:
        said = r.get("error") or "; ".join(["FAILED: " + p for p in r["problems"]] + [r["note"]])
        if said:
            notes.append(f"- {r['scenario']} ({r['backend']}): {said}")
    return "\n".join(lines + (["", *notes] if notes else []))


def plan(names: list[str], backends: list[str] | None) -> list[tuple[str, str]]:
    """The (scenario, backend) rows to run. Without ``--backend``: every scenario on its own
    backend or local, and the kill scenario on all three."""
    from bench.campaign_core import BACKENDS
    from bench.campaign_scenarios import SCENARIOS

    rows = []
    for name in names:
        fixed = SCENARIOS[name][1]
        if fixed is not None:
            chosen = list(fixed)
        elif backends:
            chosen = backends
        else:
            chosen = list(BACKENDS) if name == KILL_SCENARIO else ["local"]
        rows += [(name, backend) for backend in chosen]
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the campaign and print its table; 1 when anything was lost, duplicated or stale."""
    from bench.campaign_core import BACKENDS, GCS_PORT_ENV, MOTO_PORT_ENV
    from bench.campaign_scenarios import SCENARIOS
    from devstack.servers import GcsEmulator, MotoServer

    parser = argparse.ArgumentParser(prog="python -m bench.campaign", description=__doc__)
    parser.add_argument("--full", action="store_true", help="full sizes (slow)")
    parser.add_argument("--only", action="append", default=[], help="run only these scenarios")
    parser.add_argument(
        "--backend",
        action="append",
        choices=[*BACKENDS, "all"],
        help="destination backend(s) for the Drive scenarios (default: local; kills on all)",
    )
    parser.add_argument("--json", action="store_true", help="print the rows as JSON too")
    parser.add_argument("--timeout", type=float, default=None, help="per-row limit (s)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_one(args.child, (args.backend or ["local"])[0], args.full)))
        return 0
    unknown = [n for n in args.only if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenarios {unknown}; choose from {list(SCENARIOS)}")
    backends = list(BACKENDS) if args.backend and "all" in args.backend else args.backend
    todo = plan(args.only or list(SCENARIOS), backends)
    timeout = args.timeout or (3600.0 if args.full else 300.0)
    mode = "full" if args.full else "short"
    print(f"drivepipe reliability campaign ({mode} mode, {len(todo)} rows)", flush=True)
    rows = []
    with ExitStack() as servers:
        moto = servers.enter_context(MotoServer())  # one moto_server for every S3 row
        os.environ[MOTO_PORT_ENV] = str(moto.port)
        if any(backend == "gcs" for _, backend in todo):
            gcs = servers.enter_context(GcsEmulator())
            os.environ[GCS_PORT_ENV] = str(gcs.port)
        try:
            for name, backend in todo:
                rows.append(run_in_child(name, backend, args.full, timeout))
                r = rows[-1]
                status = "FAILED" if failed(r) else "ok"
                print(
                    f"  {status:<6} {name} [{backend}] ({r['seconds']:.1f} s)",
                    file=sys.stderr,
                    flush=True,
                )
        finally:
            os.environ.pop(MOTO_PORT_ENV, None)
            os.environ.pop(GCS_PORT_ENV, None)
    print(table(rows))
    if args.json:
        print(json.dumps(rows, indent=2))
    return 1 if any(failed(r) for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
