"""The finalizer: one live finalizer per run, and a dead one never leaves its run "finalizing".

A finalizer that died is played by taking the run's finalize lease directly and never releasing
it; its expiry by the lease's own clock (a last renewal more than a TTL ago) or by the clock
``maybe_finalize`` takes. Items are handed to the worker directly from an in-process list
queue; storage is a local directory, an S3 bucket on moto_server and a bucket on the GCS
emulator (which enforces ``ifGenerationMatch`` through devstack/gcs_emulator.py).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devstack.drive_emulator.emulator import DriveEmulator
from shared.config import Pipeline, load_config_from_env, parse_config
from shared.drive import DriveClient
from shared.errors import ConfigError
from shared.run.engine import SyncRequest, sync_lease
from shared.run.fanout import runs
from shared.run.fanout.options import DEFAULT_FINALIZE_SECONDS
from shared.run.fanout.planner import FanoutStarted, start_fanout
from shared.run.fanout.progress import progress
from shared.run.fanout.runs import finalize_lease, maybe_finalize, run_lease
from shared.run.fanout.worker import handle_item
from shared.run.lease import Lease
from shared.run.state import SyncState
from shared.storage import Storage, open_storage
from shared.storage.layout import run_key, sync_state_key
from shared.triggers import service
from tests.fanout.conftest import ListQueue
from tests.fanout.poison import SimulatedCrash

FILES = {
    "a/one.csv": "region,units\nEU,1\nUS,2\n",
    "a/two.csv": "region,units\nEU,3\n",
    "b/three.csv": "region,units\nUS,4\n",
    "x/dup.csv": "region,units\nEU,5\nUS,6\n",
}
CONFIG = """
[pipelines.p]
source = {{ folder_id = "${{DRIVE_FOLDER_ID}}" }}
output = {{ url = "{url}", format = "csv", partition_by = ["region"] }}
fanout = {{ min_files = 2, batch_size = 1 }}
"""


def last_value(csv: bytes) -> str:
    """The last cell of a CSV output (units: the lineage columns come first)."""
    return csv.decode().strip().rsplit(",", 1)[-1]


def after_expiry() -> float:
    """A clock past the finalize lease of a finalizer that took it just now."""
    return time.time() + DEFAULT_FINALIZE_SECONDS + 1


@dataclass
class Setup:
    """The pipeline (loaded as the service loads it), its destination and the Drive."""

    pipeline: Pipeline
    dest: Storage
    drive: DriveClient
    drive_root: Path

    def plan(self) -> tuple[str, ListQueue]:
        queue = ListQueue()
        request = SyncRequest(pipeline=self.pipeline, trigger="test")
        started = start_fanout(request, queue, drive=self.drive)
        assert isinstance(started, FanoutStarted)
        return started.run_id, queue

    def deliver(self, queue: ListQueue) -> None:
        for item in queue.items:
            assert handle_item(item, self.pipeline, drive=self.drive) == "done"

    def state(self) -> dict[str, Any]:
        """The state's entries by input path."""
        inputs = json.loads(self.dest.read(sync_state_key("p")))["inputs"]
        return {entry["path"]: entry for entry in inputs.values()}

    def assert_finished(self, run_id: str) -> None:
        """Manifest written, state merged, sync lease released, finalize lease cleaned up."""
        manifest = json.loads(self.dest.read(run_key(run_id)))
        assert manifest["counts"]["written"] == len(FILES), manifest
        state = self.state()
        assert sorted(state) == sorted(FILES)
        assert all(entry["run_id"] == run_id for entry in state.values())
        for entry in state.values():
            for key in entry["output_keys"]:
                assert self.dest.exists(key), key
        latest = sync_lease(self.dest, "p").latest()
        assert latest is not None and latest.released
        assert list(self.dest.list(f"_locks/finalize/{run_id}/")) == []


@pytest.fixture(params=["local", "s3", "gcs"])
def setup(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Setup]:
    if request.param == "s3":
        out_url = f"s3://{request.getfixturevalue('s3_bucket')}/out"
    elif request.param == "gcs":
        out_url = f"gs://{request.getfixturevalue('gcs_bucket')}/out"
    else:
        out_url = str(tmp_path / "out")
    root = tmp_path / "drive"
    for relpath, text in FILES.items():
        (root / relpath).parent.mkdir(parents=True, exist_ok=True)
        (root / relpath).write_text(text)
    config = tmp_path / "drivepipe.toml"
    config.write_text(CONFIG.format(url=out_url))
    with DriveEmulator(root) as emulator:
        env = {
            "DRIVE_API_URL": emulator.url,
            "DRIVE_ACCESS_TOKEN": "t",
            "DRIVE_FOLDER_ID": emulator.root_id,
            "DRIVEPIPE_CONFIG": str(config),
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        for name in ("DRIVEPIPE_FANOUT_QUEUE", "DRIVEPIPE_FANOUT_TOPIC"):
            monkeypatch.delenv(name, raising=False)  # syncs from the service run inline
        load_config_from_env.cache_clear()
        pipeline = service.config().pipelines["p"]
        drive = DriveClient.from_env(env)
        yield Setup(pipeline, open_storage(out_url), drive, root)
    load_config_from_env.cache_clear()


def dead_finalizer(dest: Storage, run_id: str) -> tuple[Lease, Callable[[], None]]:
    """A finalizer that took the run's lease and died; call the second value to let it expire."""
    now = [time.time()]
    lease = finalize_lease(dest, run_id, clock=lambda: now[0])
    assert lease.try_acquire() is not None

    def expire() -> None:  # its last renewal was more than a TTL ago
        now[0] -= DEFAULT_FINALIZE_SECONDS + 1
        lease.renew()

    return lease, expire


def test_a_live_finalize_lease_blocks_a_second_finalizer_until_it_expires(setup: Setup) -> None:
    run_id, queue = setup.plan()
    dead_finalizer(setup.dest, run_id)
    setup.deliver(queue)  # every item reported; the last worker could not finalize

    assert not setup.dest.exists(run_key(run_id))
    running = progress(setup.dest, run_id)
    assert running is not None and running["status"] == "finalizing"
    assert maybe_finalize(setup.dest, run_id) is None
    assert not setup.dest.exists(sync_state_key("p"))  # nothing merged meanwhile

    manifest = maybe_finalize(setup.dest, run_id, clock=after_expiry)
    assert manifest is not None and manifest.run_id == run_id
    setup.assert_finished(run_id)
    assert maybe_finalize(setup.dest, run_id, clock=after_expiry) is None  # finished once


@pytest.mark.parametrize("trigger", ["http", "schedule", "redelivery"])
def test_the_next_trigger_finishes_a_run_whose_finalizer_died(setup: Setup, trigger: str) -> None:
    run_id, queue = setup.plan()
    _, expire = dead_finalizer(setup.dest, run_id)
    setup.deliver(queue)

    def fire() -> bool:
        """Pull the trigger; True when a new sync ran (or the item was acknowledged)."""
        if trigger == "http":
            response = service.http_sync(json.dumps({"pipeline": "p"}))
            assert response.status in (200, 409), response.body
            return response.status == 200
        if trigger == "schedule":
            [result] = service.on_schedule(["p"], trigger="schedule")
            return "summary" in result
        return handle_item(queue.items[0], setup.pipeline, drive=setup.drive) == "duplicate"

    ran = fire()  # while the dead finalizer's lease is live: the run stays finalizing
    if trigger != "redelivery":
        assert not ran  # 409 / skipped: the run still holds the pipeline's sync lease
    assert service.http_get_run(run_id).body["status"] == "finalizing"
    assert not setup.dest.exists(sync_state_key("p"))

    expire()
    assert fire()
    body = service.http_get_run(run_id).body
    assert body["run_id"] == run_id and "status" not in body  # the manifest, not progress
    setup.assert_finished(run_id)
    if trigger != "redelivery":  # then the new sync ran: nothing left to fetch
        latest = sync_lease(setup.dest, "p").latest()
        assert latest is not None and latest.run_id != run_id


def test_a_sync_releases_the_lease_a_finished_run_kept(setup: Setup) -> None:
    run_id, queue = setup.plan()
    setup.deliver(queue)
    setup.assert_finished(run_id)
    # The finalizer died between writing the manifest and releasing the sync lease.
    run_lease(setup.dest, "p", run_id, ttl=3600).acquire()

    response = service.http_sync(json.dumps({"pipeline": "p"}))
    assert response.status == 200, response.body
    assert response.body["counts"]["skipped_unchanged"] == len(FILES)


@pytest.mark.parametrize("crash", ["before_saving_state", "after_saving_state"])
def test_a_rerun_after_a_crash_mid_finalize_deletes_only_stale_outputs(
    setup: Setup, crash: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, queue = setup.plan()
    setup.deliver(queue)
    setup.assert_finished(first)
    assert setup.dest.exists("p/region=US/a__one.csv")
    # a/one.csv and x/dup.csv lose their US rows; the new x/dup.tsv would write x__dup.csv too,
    # which x/dup.csv owns: it writes x__dup~<id tag>.csv (shared.run.ownership).
    (setup.drive_root / "a/one.csv").write_text("region,units\nEU,10\n")
    (setup.drive_root / "x/dup.csv").write_text("region,units\nEU,50\n")
    (setup.drive_root / "x/dup.tsv").write_text("region\tunits\nUS\t60\n")
    second, queue = setup.plan()
    assert len(queue.items) == 3

    save = SyncState.save

    def dies_once(state: SyncState, storage: Storage) -> None:
        monkeypatch.setattr(SyncState, "save", save)
        if crash == "after_saving_state":
            save(state, storage)
        raise SimulatedCrash("finalizer died")

    monkeypatch.setattr(SyncState, "save", dies_once)
    *rest, last = queue.items
    for item in rest:
        assert handle_item(item, setup.pipeline, drive=setup.drive) == "done"
    with pytest.raises(SimulatedCrash):
        handle_item(last, setup.pipeline, drive=setup.drive)
    assert not setup.dest.exists(run_key(second))

    assert handle_item(last, setup.pipeline, drive=setup.drive) == "duplicate"  # redelivered
    assert setup.dest.exists(run_key(second))
    assert not setup.dest.exists("p/region=US/a__one.csv")  # stale: deleted even on the re-run
    assert not setup.dest.exists("p/region=US/x__dup.csv")  # stale for x/dup.csv
    [tsv_key] = setup.state()["x/dup.tsv"]["output_keys"]
    assert re.fullmatch(r"p/region=US/x__dup~[0-9a-f]{8}\.csv", tsv_key)
    assert last_value(setup.dest.read(tsv_key)) == "60"  # dup.tsv's
    assert last_value(setup.dest.read("p/region=EU/a__one.csv")) == "10"
    assert setup.dest.exists("p/region=US/b__three.csv")  # untouched by the second run
    state = setup.state()
    assert state["a/one.csv"]["output_keys"] == ["p/region=EU/a__one.csv"]
    assert state["x/dup.csv"]["output_keys"] == ["p/region=EU/x__dup.csv"]
    assert {path: e["run_id"] for path, e in state.items()} == {
        "a/one.csv": second,
        "a/two.csv": first,
        "b/three.csv": first,
        "x/dup.csv": second,
        "x/dup.tsv": second,
    }
    for entry in state.values():
        for key in entry["output_keys"]:
            assert setup.dest.exists(key), key


def test_a_finalizer_that_lost_its_lease_writes_nothing(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id, queue = setup.plan()
    read_results = runs.read_results

    def read_then_stall(*args: Any) -> Any:
        results = read_results(*args)
        # We stalled past our lease; another finalizer took it over meanwhile.
        later = finalize_lease(setup.dest, run_id, clock=lambda: after_expiry() + 60)
        assert later.try_acquire() is not None
        return results

    monkeypatch.setattr(runs, "read_results", read_then_stall)
    setup.deliver(queue)
    assert not setup.dest.exists(sync_state_key("p"))
    assert not setup.dest.exists(run_key(run_id))
    latest = sync_lease(setup.dest, "p").latest()
    assert latest is not None and latest.run_id == run_id and not latest.released


def test_finalize_seconds_must_fit_in_the_run_lease() -> None:
    fanout = {"lease_seconds": 120, "finalize_seconds": 300}
    with pytest.raises(ConfigError, match=r"pipelines\.p\.fanout: .*finalize_seconds \(300\)"):
        parse_config({"pipelines": {"p": {"output": {"url": "/tmp/x"}, "fanout": fanout}}})
    with pytest.raises(ConfigError, match=r"pipelines\.p\.fanout\.finalize_seconds"):
        parse_config(
            {"pipelines": {"p": {"output": {"url": "/tmp/x"}, "fanout": {"finalize_seconds": 5}}}}
        )
