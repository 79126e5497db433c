"""The mirror scenario of issue 13 through a fanned-out run (in-process queue, real storage).

The planner copies the moved files' outputs; the finalizer saves the state without the old
entries, and only then deletes the old keys and the removed inputs' outputs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.drive_emulator import DriveEmulator
from shared.drive import DriveClient
from shared.run.engine import SyncRequest
from shared.run.fanout.planner import FanoutStarted, start_fanout
from shared.run.fanout.worker import handle_item
from shared.run.manifest import InputRecord, RunManifest
from shared.storage import open_storage
from shared.storage.layout import run_key, sync_state_key
from tests.core import mirror_scenario as scenario
from tests.fanout.conftest import ListQueue


@pytest.fixture
def drive(tmp_path: Path) -> Iterator[DriveEmulator]:
    root = tmp_path / "drive"
    scenario.build(root)
    with DriveEmulator(root) as emulator:
        yield emulator


def fanned_out_sync(url: str, drive: DriveEmulator, *, feed: bool = False) -> RunManifest:
    folder = drive.id_for(scenario.FOLDER)
    pipeline = scenario.pipeline(
        url,
        folder,
        fanout={"min_files": 1, "batch_size": 1},
        source={"folder_id": folder, "changes_feed": feed},
    )
    client = DriveClient.from_env({"DRIVE_API_URL": drive.url, "DRIVE_ACCESS_TOKEN": "t"})
    queue = ListQueue()
    started = start_fanout(SyncRequest(pipeline=pipeline, trigger="test"), queue, drive=client)
    assert isinstance(started, FanoutStarted)
    for item in queue.items:
        assert handle_item(item, pipeline, drive=client) == "done"
    raw = open_storage(url).read(run_key(started.run_id))
    return manifest_from_json(raw)


def manifest_from_json(raw: bytes) -> RunManifest:
    data = json.loads(raw)
    data.pop("counts")
    data["inputs"] = [InputRecord(**r) for r in data["inputs"]]
    return RunManifest(**data)


def test_a_fanned_out_sync_mirrors_moves_and_removals(
    storage_url: str, drive: DriveEmulator
) -> None:
    first = fanned_out_sync(storage_url, drive)
    assert first.counts()["written"] == len(scenario.FILES)
    scenario.change(drive.tree.root)
    drive.reset_stats()
    second = fanned_out_sync(storage_url, drive)
    assert any(note.startswith("fanned out: 2 work items") for note in second.notes)
    scenario.check_mirrored(storage_url, second)
    assert drive.stats.snapshot()["requests"].get("media", 0) == 2


def test_a_fanned_out_run_applies_the_changes_feed(tmp_path: Path, drive: DriveEmulator) -> None:
    url = str(tmp_path / "out")
    fanned_out_sync(url, drive, feed=True)
    state = json.loads(open_storage(url).read(sync_state_key("lake")))
    assert state["feed"]["token"]  # stored by the finalizer
    scenario.change(drive.tree.root)
    lake = drive.tree.root / scenario.FOLDER
    os.rename(drive.tree.root / "elsewhere/g.csv", lake / "g.csv")  # no move out: no walk
    drive.reset_stats()
    second = fanned_out_sync(url, drive, feed=True)
    calls = drive.stats.snapshot()["requests"]
    assert "list" not in calls and calls.get("media") == 2, calls
    assert any("applied unwalked" in note for note in second.notes), second.notes
    statuses = {r.path: r.status for r in second.inputs}
    assert statuses["keep/d2.csv"] == statuses["other/e.csv"] == "moved"
    assert statuses["keep/b.csv"] == statuses["keep/c.csv"] == "removed"
    expected = scenario.expected_keys() | {scenario.output_key("g.csv", 7), "_raw/g.csv"}
    assert scenario.data_keys(url) == expected
