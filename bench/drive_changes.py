"""Benchmark: plan a sync of a big Drive folder by full walk and by the changes feed.

    python -m bench.drive_changes [--files 10000] [--latency 0.03]

A ``--files`` folder (10 x 10 leaf folders) is served by the in-process emulator with
``--latency`` s per request. The state is seeded from one walk (every file known, as after a
first sync; the feed position taken before that walk), then each scenario plans a dry run
both ways and prints Drive requests and wall time side by side:

- ``unchanged``: nothing changed;
- ``edited``: 10 edits, 2 moves and 2 deletions.

Only planning is timed (listing or the feed, reconciling, no downloads): what the feed saves.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from devstack.drive_emulator import DriveEmulator
from devstack.drive_emulator.faults import FaultConfig
from devstack.drive_emulator.generate import generate_tree
from shared.config import Pipeline, parse_config
from shared.drive import DriveClient
from shared.run import feed
from shared.run.engine import SyncRequest, open_sync, plan
from shared.run.mirror import state_key
from shared.run.state import InputState, SyncState, definition_hash
from shared.storage import open_storage


def pipeline(url: str, folder: str, changes_feed: bool) -> Pipeline:
    """A CSV pipeline with or without the changes feed."""
    body = {"source": {"folder_id": folder, "changes_feed": changes_feed}, "output": {"url": url}}
    return parse_config({"pipelines": {"bench": body}}).pipelines["bench"]


def seed_state(url: str, drive: DriveClient, folder: str, p: Pipeline) -> None:
    """The state after a first sync: every file known, and the feed position."""
    token = drive.start_page_token()
    folders: dict[str, str] = {}
    state = SyncState("bench", definition_hash(p))
    for file in drive.walk(folder, folders=folders):
        key = state_key(file)
        state.inputs[key] = InputState(
            file.md5, file.modified_time, file.size, file.path, [f"{file.path}.parquet"], "seed"
        )
    check = feed.FeedCheck(token, None)
    if p.source.changes_feed:
        state.feed = feed.position(check, folder, folders)
    state.save(open_storage(url))


def change_tree(root: Path) -> None:
    """10 edits, 2 moves (to another folder) and 2 deletions."""
    files = sorted(p for p in root.rglob("*.csv"))
    for path in files[:10]:
        path.write_text(path.read_text() + "\n")
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    for path in files[10:12]:
        os.rename(path, files[-1].parent / f"moved_{path.name}")
    for path in files[12:14]:
        path.unlink()


def measure(emulator: DriveEmulator, p: Pipeline, drive: DriveClient) -> tuple[int, float, str]:
    """Drive requests and wall time of one dry-run plan, and what it found."""
    emulator.reset_stats()
    started = time.perf_counter()
    ctx = open_sync(SyncRequest(pipeline=p, dry_run=True), drive=drive)
    planned = plan(ctx)
    elapsed = time.perf_counter() - started
    requests = sum(emulator.stats.snapshot()["requests"].values())
    counts = planned.manifest.counts()
    found = f"fetch {len(planned.to_fetch)}, moved {counts['moved']}, removed {counts['removed']}"
    return requests, elapsed, found


def main() -> None:
    """Run both scenarios and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--latency", type=float, default=0.03)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="drivepipe-changes-"))
    try:
        root = work / "drive"
        generate_tree(root, args.files, min_size=128, max_size=256, depth=2, fanout=10, seed=3)
        with DriveEmulator(root, faults=FaultConfig(latency_s=args.latency)) as emulator:
            env = {"DRIVE_API_URL": emulator.url, "DRIVE_ACCESS_TOKEN": "bench"}
            drive = DriveClient.from_env(env)
            folder = emulator.root_id
            modes = {
                "full walk": pipeline(str(work / "walk"), folder, False),
                "changes feed": pipeline(str(work / "feed"), folder, True),
            }
            for p in modes.values():
                seed_state(p.output.url, drive, folder, p)
            print(f"{args.files} files, {args.latency * 1000:.0f} ms a request")
            print(f"{'scenario':<11} {'mode':<13} {'requests':>8} {'seconds':>8}  found")
            for scenario in ("unchanged", "edited"):
                if scenario == "edited":
                    change_tree(root)
                for mode, p in modes.items():
                    requests, elapsed, found = measure(emulator, p, drive)
                    print(f"{scenario:<11} {mode:<13} {requests:>8} {elapsed:>8.2f}  {found}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
