"""Our download path as the sync engine runs it, without the transform: for the Drive benches.

``pipelined`` lists a folder and downloads every file it finds through
:class:`shared.run.prefetch.Downloads`: one pool and one in-flight bound for listing and
downloads, each file downloaded (and checked against Drive's checksum) as soon as the walk
yields it, the rest once the listing is complete. ``listed_then_fetched`` is the engine's
shape before pipelining: the whole walk, then ``fetch_many``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from shared.drive import DriveClient, DriveFile
from shared.errors import DriveError
from shared.run.fetch import scratch_file
from shared.run.prefetch import Downloads


@dataclass
class Timeline:
    """When (seconds after the start) the first download was opened and the walk ended."""

    first_download: float | None = None
    walk_done: float | None = None
    early: int = 0  # files queued for download while the walk was still running
    max_in_flight: int = 0  # the most requests the client had open at once
    extra: dict[str, float] = field(default_factory=dict)


def _deliver(out: Path, file: DriveFile, source: str) -> None:
    target = out / file.path
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, target)


def pipelined(
    client: DriveClient, root_id: str, out: Path, concurrency: int, scratch: Path
) -> Timeline:
    """Walk ``root_id`` and download every file into ``out``, overlapping the two."""
    start = time.perf_counter()
    timeline = Timeline()
    scratch.mkdir(parents=True, exist_ok=True)

    class Timed(Downloads):
        def open_scratch(self, file: DriveFile) -> IO[bytes]:
            if timeline.first_download is None:
                timeline.first_download = time.perf_counter() - start
            return super().open_scratch(file)

    with Timed(client, concurrency=concurrency, scratch=str(scratch)) as downloads:
        listed = list(downloads.listing().walk(root_id))
        timeline.walk_done = time.perf_counter() - start
        timeline.early = downloads.early_fetches
        for file, result in downloads.fetch_many(listed, downloads.open_scratch):
            if isinstance(result, DriveError):
                raise SystemExit(f"ours failed on {file.path}: {result}")
            _deliver(out, file, scratch_file(downloads.scratch, file))
        slots = downloads.drive.slots
        timeline.max_in_flight = slots.max_in_use if slots else 0
    return timeline


def listed_then_fetched(client: DriveClient, root_id: str, out: Path, concurrency: int) -> Timeline:
    """The whole walk first, then ``fetch_many`` at ``concurrency`` (no shared bound)."""
    start = time.perf_counter()
    timeline = Timeline()
    listed = list(client.walk(root_id))
    timeline.walk_done = time.perf_counter() - start
    open_dest = _opener(out, timeline, start)
    for file, result in client.fetch_many(listed, open_dest, concurrency=concurrency):
        if isinstance(result, DriveError):
            raise SystemExit(f"ours failed on {file.path}: {result}")
    return timeline


def _opener(out: Path, timeline: Timeline, start: float) -> Callable[[DriveFile], IO[bytes]]:
    def open_dest(file: DriveFile) -> IO[bytes]:
        if timeline.first_download is None:
            timeline.first_download = time.perf_counter() - start
        target = out / file.path
        target.parent.mkdir(parents=True, exist_ok=True)
        return target.open("w+b")

    return open_dest
