"""Kill -9 at the crash points of :mod:`shared.crashpoints`, on each backend, then re-run.

Each trial syncs a folder, changes it (a workbook loses a sheet, a file is renamed, one
deleted, one edited; for ``mid_write`` on S3/GCS a 10 MB file is added, big enough for a
multipart / resumable upload), and runs ``drivepipe sync`` in a child process that
SIGKILLs itself at one point. Then: the state claims no missing object, nothing partial
sits at a final key, the killed writer's leftovers are counted (temp files; open multipart
uploads), and a re-run leaves exactly the folder's rows in the destination.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd

from bench.campaign_core import (
    REPO,
    WAIT_LIMIT,
    Dest,
    Outcome,
    Sizes,
    destination,
    drive_folder,
    settle,
)
from devstack.drive_emulator import DriveEmulator
from shared.config import load_config
from shared.run.sync import SyncRequest, run_sync
from tests.reliability.helpers import missing_outputs, toml_dumps
from tests.reliability.lake import Row, audit, tagged_rows, write_tagged_csv

# (point, hit): the order visits the cheap, common ones first (short mode takes the first 4).
POINTS = [
    ("outputs_written", 2),
    ("state_saved", 2),
    ("mirror_saved", 1),
    ("mid_write", 1),
    ("processing", 1),
    ("before_manifest", 1),
]
PAD = "x" * 100  # rows of about 110 bytes: 90,000 of them make a 10 MB output


def kill_points(sizes: Sizes, work: Path, backend: str) -> Outcome:
    """Every trial on ``backend``, summed; the note says what the kills left behind."""
    total = Outcome(0, 0)
    notes = []
    with drive_folder() as (root, emulator):
        for n, (point, hit) in enumerate(POINTS[: sizes.kill_points]):
            dest = destination(backend, work, f"kill{n}")
            outcome, left = _trial(root / f"t{n}", emulator, dest, work, point, hit)
            total.add(outcome)
            notes.append(f"{point}:{hit} left {'n/a' if left is None else left}")
    total.note = "; ".join(notes) + " (temp files / open multipart uploads after the kill)"
    return total


def _trial(
    folder: Path, emulator: DriveEmulator, dest: Dest, work: Path, point: str, hit: int
) -> tuple[Outcome, int | None]:
    _workbook(folder / "book.xlsx", {"S1": "s1", "S2": "s2"})
    for name in ("a", "b", "c", "d"):
        write_tagged_csv(folder / f"{name}.csv", f"{folder.name}-{name}", 5)
    config = work / f"kill-{folder.name}.toml"
    body = {
        "source": {"folder_id": emulator.id_for(folder.name)},
        "output": {"url": dest.url, "format": "csv"},
        "read": {"excel": {"sheets": "all"}},
        "concurrency": 1,
    }
    config.write_text(toml_dumps({"pipelines": {"rel": body}}))
    pipeline = load_config(config).pipelines["rel"]
    run_sync(SyncRequest(pipeline=pipeline))

    tag = folder.name
    expected = _workbook(folder / "book.xlsx", {"S1": f"{tag}-s1-v2"})  # S2 goes
    (folder / "a.csv").rename(folder / "a2.csv")
    (folder / "b.csv").unlink()
    expected["c"] = write_tagged_csv(folder / "c.csv", f"{tag}-c-v2", 7)
    if point == "mid_write" and dest.backend != "local":  # over the multipart threshold
        expected["big"] = write_tagged_csv(folder / "big.csv", f"{tag}-big", 90_000, PAD)
    expected["a"] = tagged_rows(f"{tag}-a", 5)
    expected["d"] = tagged_rows(f"{tag}-d", 5)
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "DRIVEPIPE_CRASH_AT": f"{point}:{hit}",
        "DRIVEPIPE_CHECKPOINT_EVERY": "1",
        "DRIVEPIPE_LEASE_SECONDS": "2",
    }
    command = [sys.executable, "-m", "shared.cli", "sync", "--config", str(config), "--json"]
    outcome = Outcome(0, 0)
    try:
        child = subprocess.run(
            command, env=env, cwd=REPO, capture_output=True, text=True, timeout=WAIT_LIMIT
        )
        code: int | str = child.returncode
    except subprocess.TimeoutExpired:
        code = "timeout"
    outcome.check(code == -signal.SIGKILL, f"{point}:{hit}: the child exited {code}, not killed")
    claims = missing_outputs(dest.storage, "rel")
    outcome.check(not claims, f"{point}: after the kill the state claims missing {claims[:3]}")
    partial = audit(dest.storage, {}).unreadable
    outcome.check(not partial, f"{point}: partial objects at final keys {partial[:3]}")
    left = dest.leftovers()
    rerun = run_sync(SyncRequest(pipeline=pipeline, lock_wait_seconds=30))
    outcome.check(not rerun.failed, f"{point}: the re-run failed {rerun.failed[:2]}")
    result = settle(dest.storage, expected, leftovers=dest.leftovers())
    result.problems += outcome.problems
    return result, left


def _workbook(path: Path, sheets: dict[str, str]) -> dict[str, list[Row]]:
    """An xlsx with one sheet per name, 5 rows each tagged; expected rows by sheet."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with pd.ExcelWriter(path) as writer:
        for sheet, tag in sheets.items():
            frame = pd.DataFrame({"file": [tag] * 5, "row": list(range(5))})
            frame.to_excel(writer, sheet_name=sheet, index=False)
    return {f"book/{sheet}": tagged_rows(tag, 5) for sheet, tag in sheets.items()}
