"""Planner, worker, dead-letter and finalizer on a local destination (no queue service).

Items are collected by an in-process list queue and handed to the worker directly, so each
delivery (first, repeated, last, dead-lettered) is driven deliberately.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.drive_emulator.emulator import DriveEmulator
from shared.config import Pipeline, parse_config
from shared.drive import DriveClient
from shared.errors import BadWorkItem, ConfigError, ItemCrashed, LeaseHeld
from shared.run.fanout.items import WorkItem
from shared.run.fanout.planner import start_fanout
from shared.run.fanout.progress import progress
from shared.run.fanout.worker import dead_letter, handle_item
from shared.run.sync import SyncRequest, run_sync, sync_lease
from shared.storage import open_storage
from shared.storage.layout import error_key, plan_key, result_key, run_key
from tests.fanout.conftest import ListQueue

FILES = {
    "a/one.csv": "units\n1\n",
    "a/two.csv": "units\n2\n",
    "b/bad.json": '{"broken',
    "b/three.csv": "units\n3\n",
    "c/poison.csv": "poison,units\n1,1\n",
}


@pytest.fixture
def drive(tmp_path: Path) -> Iterator[DriveClient]:
    root = tmp_path / "drive"
    for relpath, text in FILES.items():
        (root / relpath).parent.mkdir(parents=True, exist_ok=True)
        (root / relpath).write_text(text)
    with DriveEmulator(root) as emulator:
        env = {"DRIVE_API_URL": emulator.url, "DRIVE_ACCESS_TOKEN": "t"}
        client = DriveClient.from_env(env)
        client.root_id = emulator.root_id  # type: ignore[attr-defined]
        yield client


def make_pipeline(tmp_path: Path, folder_id: str, *, batch_size: int = 1) -> Pipeline:
    return parse_config(
        {
            "pipelines": {
                "p": {
                    "source": {"folder_id": folder_id},
                    "steps": [{"op": "custom", "function": "tests.fanout.poison:crash_on_marker"}],
                    "output": {"url": str(tmp_path / "out"), "format": "csv"},
                    "fanout": {"min_files": 2, "batch_size": batch_size, "max_attempts": 2},
                }
            }
        }
    ).pipelines["p"]


def plan(tmp_path: Path, drive: DriveClient, queue: ListQueue) -> tuple[Pipeline, str]:
    pipeline = make_pipeline(tmp_path, drive.root_id)  # type: ignore[attr-defined]
    started = start_fanout(SyncRequest(pipeline=pipeline, trigger="test"), queue, drive=drive)
    assert started is not None
    return pipeline, started.run_id


def item_with(queue: ListQueue, path: str) -> WorkItem:
    return next(i for i in queue.items if any(p.file.path == path for p in i.files))


def test_last_delivery_records_the_crash_and_the_run_completes(
    tmp_path: Path, drive: DriveClient
) -> None:
    queue = ListQueue()
    pipeline, run_id = plan(tmp_path, drive, queue)
    dest = open_storage(pipeline.output.url)
    assert len(queue.items) == len(FILES)
    poison = item_with(queue, "c/poison.csv")

    with pytest.raises(ItemCrashed, match="SimulatedCrash"):
        handle_item(poison, pipeline, attempt=1, max_attempts=2, drive=drive)
    assert not dest.exists(result_key(run_id, poison.item_id))
    assert json.loads(dest.read(error_key(run_id, poison.item_id)))["attempt"] == 1
    with pytest.raises(ItemCrashed):  # still raised: the message also goes to the DLQ
        handle_item(poison, pipeline, attempt=2, max_attempts=2, drive=drive)
    assert dest.exists(result_key(run_id, poison.item_id))
    assert dead_letter(poison, deliveries=2) == "duplicate"

    running = progress(dest, run_id)
    assert running is not None and running["items"]["failed"] == 1
    assert running["items"]["pending"] == len(FILES) - 1
    for item in queue.items:
        if item is not poison:
            assert handle_item(item, pipeline, drive=drive) == "done"
    manifest = json.loads(dest.read(run_key(run_id)))
    records = {r["path"]: r for r in manifest["inputs"]}
    assert "gave up after 2 deliveries" in records["c/poison.csv"]["error"]
    assert records["b/bad.json"]["status"] == "failed"
    assert dest.exists(records["b/bad.json"]["quarantine_key"])
    assert manifest["counts"]["written"] == 3
    assert dest.read("a/one.csv").decode().split() == ['"units"', "1"]
    state = json.loads(dest.read("_state/p.json"))["inputs"]
    assert sorted(v["path"] for v in state.values()) == [
        "a/one.csv",
        "a/two.csv",
        "b/bad.json",
        "b/three.csv",
    ]

    # A repeated delivery after the end changes nothing; the next sync has too little to fan out.
    first = next(i for i in queue.items if i is not poison)
    assert handle_item(first, pipeline, drive=drive) == "duplicate"
    again = start_fanout(SyncRequest(pipeline=pipeline), ListQueue(), drive=drive)
    assert again is None  # only the crashed file is left to fetch (1 < min_files 2)


def test_a_fanned_out_run_holds_the_sync_lease_until_it_is_finalized(
    tmp_path: Path, drive: DriveClient
) -> None:
    queue = ListQueue()
    pipeline, run_id = plan(tmp_path, drive, queue)
    inline = SyncRequest(pipeline=pipeline.model_copy(update={"fanout": None}))
    with pytest.raises(LeaseHeld) as held:  # an inline sync must not interleave with the run
        run_sync(inline, drive=drive)
    assert held.value.holder.run_id == run_id
    with pytest.raises(LeaseHeld):  # nor may a second fan-out start
        start_fanout(SyncRequest(pipeline=pipeline), ListQueue(), drive=drive)
    for item in queue.items:
        with contextlib.suppress(ItemCrashed):  # the poison item: failed on its last delivery
            handle_item(item, pipeline, attempt=2, max_attempts=2, drive=drive)
    dest = open_storage(pipeline.output.url)
    assert dest.exists(run_key(run_id))
    lease = sync_lease(dest, pipeline.name)
    assert (latest := lease.latest()) is not None and latest.released  # the finalizer let go
    assert lease.try_acquire() is not None  # the next sync may start


def test_dead_letter_without_a_noted_error_suspects_a_timeout(
    tmp_path: Path, drive: DriveClient
) -> None:
    queue = ListQueue()
    pipeline, run_id = plan(tmp_path, drive, queue)
    item = queue.items[0]
    assert dead_letter(item, deliveries=5) == "failed"
    raw = open_storage(pipeline.output.url).read(result_key(run_id, item.item_id))
    assert "dead-lettered after 5 deliveries; no error was recorded" in raw.decode()


def test_unsent_items_fail_at_once_and_the_run_still_completes(
    tmp_path: Path, drive: DriveClient
) -> None:
    queue = ListQueue(refuse=True)
    pipeline, run_id = plan(tmp_path, drive, queue)
    dest = open_storage(pipeline.output.url)
    manifest = json.loads(dest.read(run_key(run_id)))
    assert manifest["counts"]["failed"] == len(FILES)
    assert all("could not be enqueued" in r["error"] for r in manifest["inputs"])
    assert json.loads(dest.read("_state/p.json"))["inputs"] == {}  # nothing claimed as done


def test_an_item_without_its_plan_is_an_orphan(tmp_path: Path, drive: DriveClient) -> None:
    queue = ListQueue()
    pipeline, run_id = plan(tmp_path, drive, queue)
    dest = open_storage(pipeline.output.url)
    dest.delete(plan_key(run_id))
    assert handle_item(queue.items[0], pipeline, drive=drive) == "orphan"
    assert list(dest.list(f"_runs/{run_id}/items/")) == []


def test_small_and_dry_run_syncs_do_not_fan_out(tmp_path: Path, drive: DriveClient) -> None:
    pipeline = make_pipeline(tmp_path, drive.root_id)  # type: ignore[attr-defined]
    small = pipeline.model_copy(
        update={"source": pipeline.source.model_copy(update={"include": ("a/one.csv",)})}
    )
    assert start_fanout(SyncRequest(pipeline=small), ListQueue(), drive=drive) is None
    dry = SyncRequest(pipeline=pipeline, dry_run=True)
    assert start_fanout(dry, ListQueue(), drive=drive) is None


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("not json", "not JSON"),
        ('{"v": 2}', "version-1"),
        ('{"v": 1, "run_id": "x"}', "missing"),
        (
            '{"v": 1, "run_id": "../x", "item_id": "i00001", "pipeline": "p",'
            ' "destination": "/tmp", "files": []}',
            "malformed run_id",
        ),
    ],
)
def test_bad_messages_are_rejected_with_the_reason(body: str, problem: str) -> None:
    with pytest.raises(BadWorkItem, match=problem):
        WorkItem.from_json(body)


def test_fanout_settings_are_validated() -> None:
    base = {"output": {"url": "/tmp/x"}}
    with pytest.raises(ConfigError, match=r"pipelines\.p\.fanout\.batch_size"):
        parse_config({"pipelines": {"p": {**base, "fanout": {"batch_size": 0}}}})
    with pytest.raises(ConfigError, match=r"pipelines\.p\.fanout\.workers: unknown field"):
        parse_config({"pipelines": {"p": {**base, "fanout": {"workers": 3}}}})
    assert parse_config({"pipelines": {"p": base}}).pipelines["p"].fanout is None
