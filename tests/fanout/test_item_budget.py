"""A work item within the worker's time, and an item file the planner failed on a key clash.

The worker runs the one engine, so a worker whose time runs out defers the rest of its item
(recorded, kept out of the state, done by the next run), and a file that got no output key is
fetched only for its quarantine copy. Local destination, in-process list queue, real Drive
emulator; the deadline is on a fake clock that only the pipeline's step moves.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.drive_emulator.emulator import DriveEmulator
from shared import deadline
from shared.config import Pipeline, parse_config
from shared.deadline import Deadline
from shared.drive import DriveClient
from shared.run.fanout.items import WorkItem
from shared.run.fanout.planner import FanoutStarted, start_fanout
from shared.run.fanout.worker import handle_item
from shared.run.sync import SyncRequest, run_sync
from shared.storage import open_storage
from shared.storage.layout import result_key, run_key
from tests.fanout.conftest import ListQueue
from tests.reliability.clock_steps import CLOCK

FILES = {f"f{n}.csv": f"id,seconds\n{n},20\n" for n in range(4)}


@pytest.fixture
def drive(tmp_path: Path) -> Iterator[DriveClient]:
    root = tmp_path / "drive"
    root.mkdir()
    for name, text in FILES.items():
        (root / name).write_text(text)
    with DriveEmulator(root) as emulator:
        client = DriveClient.from_env({"DRIVE_API_URL": emulator.url, "DRIVE_ACCESS_TOKEN": "t"})
        client.root_id = emulator.root_id  # type: ignore[attr-defined]
        yield client


def make_pipeline(tmp_path: Path, folder_id: str) -> Pipeline:
    body = {
        "source": {"folder_id": folder_id},
        "steps": [
            {"op": "custom", "function": "tests.reliability.clock_steps:spend"},
            {"op": "normalize_columns"},
        ],
        "output": {"url": str(tmp_path / "out"), "format": "csv"},
        "concurrency": 1,
        "fanout": {"min_files": 2, "batch_size": 4},
    }
    settings = {"custom_step_modules": ["tests.reliability.clock_steps"]}
    return parse_config({"settings": settings, "pipelines": {"p": body}}).pipelines["p"]


def plan_one_item(tmp_path: Path, drive: DriveClient) -> tuple[Pipeline, WorkItem]:
    pipeline = make_pipeline(tmp_path, drive.root_id)  # type: ignore[attr-defined]
    queue = ListQueue()
    started = start_fanout(SyncRequest(pipeline=pipeline, trigger="test"), queue, drive=drive)
    assert isinstance(started, FanoutStarted)
    [item] = queue.items
    return pipeline, item


def test_a_worker_out_of_time_defers_the_rest_of_its_item_to_the_next_run(
    tmp_path: Path, drive: DriveClient
) -> None:
    pipeline, item = plan_one_item(tmp_path, drive)
    dest = open_storage(pipeline.output.url)
    # 70 s, 10 kept: three 20 s inputs start (70, 50, 30 left), the third is stopped at 10.
    with deadline.within(Deadline.after(70, source="test", clock=CLOCK, reserve=10)):
        assert handle_item(item, pipeline, drive=drive) == "done"
    result = json.loads(dest.read(result_key(item.run_id, item.item_id)))
    statuses = sorted(r["status"] for r in result["records"])
    assert statuses == ["deferred", "deferred", "written", "written"]
    deferred = {r["path"] for r in result["records"] if r["status"] == "deferred"}
    ids = {r["path"]: r["source_id"] for r in result["records"]}
    assert all(result["states"][f"{ids[p]}:{p}"] is None for p in deferred)  # no state entry
    manifest = json.loads(dest.read(run_key(item.run_id)))  # the finalizer ran
    assert manifest["counts"]["deferred"] == 2
    assert any(n.startswith("deferred: 2 input(s)") for n in manifest["notes"])
    state = json.loads(dest.read("_state/p.json"))
    assert {e["path"] for e in state["inputs"].values()} == set(FILES) - deferred
    assert state.get("feed") is None  # the changes feed may not skip what was deferred
    # The next sync (run inline here) writes the deferred two and nothing else.
    inline = pipeline.model_copy(update={"fanout": None})
    again = run_sync(SyncRequest(pipeline=inline), drive=drive)
    written = {r.path for r in again.inputs if r.status == "written"}
    assert written == deferred
    outputs = sorted(o.key for o in dest.list() if not o.key.startswith("_"))
    assert outputs == sorted(f"p/{name}" for name in FILES)  # the table layout: p/<file>


def test_an_item_file_the_planner_failed_is_only_quarantined(
    tmp_path: Path, drive: DriveClient
) -> None:
    pipeline, item = plan_one_item(tmp_path, drive)
    clash = "output key clash: f0.csv would be under k.csv's output; rename one of them in Drive"
    files = tuple(
        dataclasses.replace(p, failed=clash) if p.file.path == "f0.csv" else p for p in item.files
    )
    item = WorkItem.from_json(dataclasses.replace(item, files=files).to_json())  # the message
    assert [p.failed for p in item.files if p.file.path == "f0.csv"] == [clash]
    before = CLOCK.now
    assert handle_item(item, pipeline, drive=drive) == "done"
    assert CLOCK.now == before + 20 * (len(FILES) - 1)  # f0's step never ran
    dest = open_storage(pipeline.output.url)
    result = json.loads(dest.read(result_key(item.run_id, item.item_id)))
    f0 = next(r for r in result["records"] if r["path"] == "f0.csv")
    assert (f0["status"], f0["error"], f0["output_keys"]) == ("failed", clash, [])
    assert dest.read(f0["quarantine_key"]) == FILES["f0.csv"].encode()
    assert result["states"][f"{f0['source_id']}:f0.csv"] is None  # tried again next run
