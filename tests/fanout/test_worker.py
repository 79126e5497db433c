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
from shared.run.engine import sync_lease
from shared.run.fanout.items import WorkItem
from shared.run.fanout.planner import FanoutStarted, start_fanout
from shared.run.fanout.progress import progress
from shared.run.fanout.worker import dead_letter, handle_item
from shared.run.manifest import RunManifest
from shared.run.sync import SyncRequest, run_sync
from shared.storage import open_storage
from shared.storage.layout import error_key, plan_key, result_key, run_key
from tests.fanout.conftest import ListQueue
from tests.fanout.poison import SimulatedCrash

FILES = {
    "a/one.csv": "units\n1\n",
    "a/two.csv": "units\n2\n",
    "b/bad.json": '{"broken',
    "b/three.csv": "units\n3\n",
    "c/poison.csv": "poison,units\n1,1\n",
}


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[DriveEmulator]:
    root = tmp_path / "drive"
    for relpath, text in FILES.items():
        (root / relpath).parent.mkdir(parents=True, exist_ok=True)
        (root / relpath).write_text(text)
    with DriveEmulator(root) as running:
        yield running


@pytest.fixture
def drive(emulator: DriveEmulator) -> DriveClient:
    env = {"DRIVE_API_URL": emulator.url, "DRIVE_ACCESS_TOKEN": "t"}
    client = DriveClient.from_env(env)
    client.root_id = emulator.root_id  # type: ignore[attr-defined]
    return client


def make_pipeline(tmp_path: Path, folder_id: str, *, batch_size: int = 1) -> Pipeline:
    return parse_config(
        {
            "settings": {"custom_step_modules": ["tests.fanout"]},
            "pipelines": {
                "p": {
                    "source": {"folder_id": folder_id},
                    "steps": [{"op": "custom", "function": "tests.fanout.poison:crash_on_marker"}],
                    "output": {"url": str(tmp_path / "out"), "format": "csv"},
                    # the queue's max_attempts is passed to handle_item; the config's must be above
                    # DRIVEPIPE_POISON_ATTEMPTS (checked at load)
                    "fanout": {"min_files": 2, "batch_size": batch_size, "max_attempts": 5},
                }
            },
        }
    ).pipelines["p"]


def plan(tmp_path: Path, drive: DriveClient, queue: ListQueue) -> tuple[Pipeline, str]:
    pipeline = make_pipeline(tmp_path, drive.root_id)  # type: ignore[attr-defined]
    started = start_fanout(SyncRequest(pipeline=pipeline, trigger="test"), queue, drive=drive)
    assert isinstance(started, FanoutStarted)
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
    header, row = dest.read("p/a__one.csv").decode().splitlines()  # the table p
    assert header.split(",")[-1] == '"units"' and row.split(",")[-1] == "1"
    assert '"_drive_path"' in header and '"a/one.csv"' in row  # lineage
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
    # Only the crashed file is left to fetch (1 < min_files 2): it runs inline, and crashes.
    inline = ListQueue()
    with pytest.raises(SimulatedCrash):
        start_fanout(SyncRequest(pipeline=pipeline), inline, drive=drive)
    assert inline.items == []
    latest = sync_lease(dest, pipeline.name).latest()
    assert latest is not None and latest.released and latest.run_id != run_id
    assert dest.exists(run_key(latest.run_id))  # the inline run still wrote its manifest


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
    queue = ListQueue()
    ran = start_fanout(SyncRequest(pipeline=small), queue, drive=drive)
    assert isinstance(ran, RunManifest) and ran.counts()["written"] == 1
    dry = start_fanout(SyncRequest(pipeline=pipeline, dry_run=True), queue, drive=drive)
    assert isinstance(dry, RunManifest) and dry.dry_run
    assert dry.counts()["planned"] == len(FILES) - 1  # a/one.csv is unchanged since
    assert queue.items == []


def test_a_small_fan_out_enabled_sync_lists_the_folder_once(
    tmp_path: Path, emulator: DriveEmulator, drive: DriveClient
) -> None:
    """Planned once, run inline on that plan: one walk of Drive, one lease epoch."""
    root_id = drive.root_id  # type: ignore[attr-defined]
    emulator.reset_stats()
    assert len(list(drive.walk(root_id))) == len(FILES)
    one_walk = emulator.stats.snapshot()
    assert sorted(one_walk["listed_folders"].values()) == [1, 1, 1, 1]  # root, a, b, c

    pipeline = parse_config(
        {
            "pipelines": {
                "p": {
                    "source": {"folder_id": root_id},
                    "output": {"url": str(tmp_path / "out"), "format": "csv"},
                    "fanout": {"min_files": 50},
                }
            }
        }
    ).pipelines["p"]
    emulator.reset_stats()
    queue = ListQueue()
    manifest = start_fanout(SyncRequest(pipeline=pipeline, trigger="test"), queue, drive=drive)
    stats = emulator.stats.snapshot()

    assert isinstance(manifest, RunManifest) and queue.items == []
    assert stats["listed_folders"] == one_walk["listed_folders"]  # each folder listed once
    assert stats["requests"]["list"] == one_walk["requests"]["list"]
    assert stats["requests"]["media"] == len(FILES)  # and each file fetched once
    assert manifest.counts()["written"] == 4 and manifest.counts()["failed"] == 1
    dest = open_storage(pipeline.output.url)
    assert not dest.exists(plan_key(manifest.run_id)) and dest.exists(run_key(manifest.run_id))
    latest = sync_lease(dest, pipeline.name).latest()
    assert latest is not None and latest.released  # held by the inline run, then let go
    assert (latest.epoch, latest.run_id) == (1, manifest.run_id)  # never released and retaken
    assert latest.expires_at - latest.acquired_at < 3600  # an inline run's TTL, not 6 hours


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


def test_an_input_that_crashed_k_deliveries_is_quarantined_and_the_item_acknowledged(
    tmp_path: Path, drive: DriveClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRIVEPIPE_POISON_ATTEMPTS", "2")
    queue = ListQueue()
    pipeline, run_id = plan(tmp_path, drive, queue)
    dest = open_storage(pipeline.output.url)
    poison = item_with(queue, "c/poison.csv")
    for attempt in (1, 2):  # max_attempts 5: redelivered, not dead-lettered yet
        with pytest.raises(ItemCrashed, match="SimulatedCrash"):
            handle_item(poison, pipeline, attempt=attempt, max_attempts=5, drive=drive)
    # The third delivery does not run the step again: the input is quarantined, the item done.
    assert handle_item(poison, pipeline, attempt=3, max_attempts=5, drive=drive) == "done"
    result = json.loads(dest.read(result_key(run_id, poison.item_id)))
    assert "crashed the function 2 times" in json.dumps(result)
    for item in queue.items:
        if item is not poison:
            assert handle_item(item, pipeline, drive=drive) == "done"
    manifest = json.loads(dest.read(run_key(run_id)))
    record = next(r for r in manifest["inputs"] if r["path"] == "c/poison.csv")
    assert (record["status"], record["error"]) == ("failed", "crashed the function 2 times")
    assert dest.read(record["quarantine_key"]) == FILES["c/poison.csv"].encode()
    assert manifest["counts"]["written"] == 3
    assert not list(dest.list("_state/attempts/"))
    state = json.loads(dest.read("_state/p.json"))["inputs"]
    assert any(v["path"] == "c/poison.csv" and v["error"] for v in state.values())
