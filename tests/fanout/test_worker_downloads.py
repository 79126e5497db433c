"""A fan-out worker fetches its item through the sync engine's downloads: the item's files
download while the first one is processed, and never more requests in flight than the
pipeline's concurrency (the client's own counter; the emulator's log for the order)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.drive_emulator import DriveEmulator
from shared.config import parse_config
from shared.drive import DriveClient
from shared.drive import client as drive_client
from shared.drive.inflight import RequestSlots
from shared.run import process
from shared.run.fanout.planner import FanoutStarted, start_fanout
from shared.run.fanout.worker import handle_item
from shared.run.sync import SyncRequest
from shared.storage import layout
from tests.fanout.conftest import ListQueue

FILES = {f"d{n % 3}/f{n}.csv": f"units\n{n}\n" for n in range(8)}
WAIT = 20.0


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[DriveEmulator]:
    root = tmp_path / "drive"
    for relpath, text in FILES.items():
        (root / relpath).parent.mkdir(parents=True, exist_ok=True)
        (root / relpath).write_text(text)
    with DriveEmulator(root) as running:
        yield running


def test_a_work_item_downloads_while_it_processes_under_the_bound(
    tmp_path: Path, emulator: DriveEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    drive = DriveClient.from_env({"DRIVE_API_URL": emulator.url, "DRIVE_ACCESS_TOKEN": "t"})
    body = {
        "source": {"folder_id": emulator.root_id},
        "output": {"url": str(tmp_path / "out"), "format": "csv"},
        "concurrency": 2,
        "fanout": {"min_files": 2, "batch_size": len(FILES)},
    }
    pipeline = parse_config({"pipelines": {"p": body}}).pipelines["p"]
    queue = ListQueue()
    started = start_fanout(SyncRequest(pipeline=pipeline, trigger="test"), queue, drive=drive)
    assert isinstance(started, FanoutStarted) and len(queue.items) == 1

    bounds: list[RequestSlots] = []

    class Recorded(RequestSlots):
        def __init__(self, limit: int) -> None:
            super().__init__(limit)
            bounds.append(self)

    monkeypatch.setattr(drive_client, "RequestSlots", Recorded)
    all_downloading = threading.Event()
    enter = emulator.stats.enter

    def entered(endpoint: str = "", subject: str = "") -> None:
        enter(endpoint, subject)
        media = [e for e in emulator.stats.request_log() if e.endpoint == "media"]
        if sum(e.phase == "start" for e in media) == len(FILES):
            all_downloading.set()

    monkeypatch.setattr(emulator.stats, "enter", entered)
    process_input = process.process_input
    overlapped: list[bool] = []

    def processing(*args: Any, **kwargs: Any) -> None:
        if not overlapped:  # the first input waits until every other download has begun
            overlapped.append(all_downloading.wait(WAIT))
        process_input(*args, **kwargs)

    monkeypatch.setattr(process, "process_input", processing)
    emulator.reset_stats()
    assert handle_item(queue.items[0], pipeline, drive=drive) == "done"

    assert overlapped == [True]  # the item's downloads went on while its first file processed
    assert [b.limit for b in bounds] == [2]
    assert 1 <= bounds[0].max_in_use <= 2  # never more than the pipeline's concurrency
    log = emulator.stats.request_log()
    assert sum(e.phase == "start" and e.endpoint == "media" for e in log) == len(FILES)
    assert {e.endpoint for e in log} == {"media"}  # no listing: the item says what to fetch
    written = sorted(p.name for p in (tmp_path / "out").rglob("*.csv"))
    assert written == sorted(f"{layout.flat_name(p)}.csv" for p in FILES)  # d0/f0 → d0__f0
