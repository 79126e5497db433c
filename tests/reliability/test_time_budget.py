"""The function's time, spent input by input: real syncs against the Drive emulator, with the
invocation's deadline on a fake clock that only the pipeline's own step moves (clock_steps).

An input starts only while more than the reserve is left; one that outlasts its budget is
stopped between steps or batches. Whatever was not processed is ``deferred``, kept out of the
state and done by the next run; an input that had the whole invocation and still did not fit
fails with the reason and a quarantine copy.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from devstack.drive_emulator import DriveEmulator
from shared import deadline
from shared.config import Pipeline, parse_config
from shared.deadline import Deadline
from shared.errors import RetryableError
from shared.run.manifest import InputRecord, RunManifest
from shared.run.process import process_input
from shared.run.single import ObjectRequest, run_object
from shared.run.sync import SyncRequest, run_sync
from shared.storage import open_storage
from shared.transform.streaming import should_stream
from tests.reliability.clock_steps import CLOCK
from tests.reliability.helpers import data_keys, missing_outputs, state_entries

STEP_SECONDS = 20
SPEND = {"op": "custom", "function": "tests.reliability.clock_steps:spend"}


def pipeline_for(dest_url: str, folder_id: str | None = None, **body: Any) -> Pipeline:
    """Spend the file's seconds, then one more step: the check between them stops an input."""
    spec: dict[str, Any] = {
        "source": {"folder_id": folder_id} if folder_id else {},
        "steps": [SPEND, {"op": "normalize_columns"}],
        "output": {"url": dest_url, "format": "csv"},
        **body,
    }
    settings = {"custom_step_modules": ["tests.reliability.clock_steps"]}
    return parse_config({"settings": settings, "pipelines": {"rel": spec}}).pipelines["rel"]


def invocation(seconds: float, reserve: float = 10) -> Deadline:
    return Deadline.after(seconds, source="test", clock=CLOCK, reserve=reserve)


def write_files(root: Path, count: int, seconds: int = STEP_SECONDS) -> list[str]:
    names = [f"f{n}.csv" for n in range(count)]
    for name in names:
        (root / name).write_text(f"id,seconds\n{name},{seconds}\n")
    return names


def by_status(manifest: RunManifest) -> dict[str, list[InputRecord]]:
    found: dict[str, list[InputRecord]] = {}
    for record in manifest.inputs:
        found.setdefault(record.status, []).append(record)
    return found


def test_an_inline_sync_defers_what_the_function_s_time_does_not_cover(
    emulator: DriveEmulator, drive_root: Path, tmp_path: Path
) -> None:
    names = write_files(drive_root, 6)
    dest_url = str(tmp_path / "dest")
    pipeline = pipeline_for(dest_url, emulator.root_id)
    dest = open_storage(dest_url)
    # 100 s, 10 kept: four inputs of 20 s fit (100 → 20 left); the fifth starts with 20 s
    # left, spends them and is stopped before its next step; the sixth never starts.
    with deadline.within(invocation(100)):
        first = run_sync(SyncRequest(pipeline=pipeline))
    groups = by_status(first)
    assert {s: len(r) for s, r in groups.items()} == {"written": 4, "deferred": 2}
    stopped, never = sorted(groups["deferred"], key=lambda r: "not started" in (r.error or ""))
    assert stopped.error == (
        "would exceed the function's remaining time: 0.0 s left, budget 10.0 s (10.0 s are "
        "kept to finish the run); left for the next run"
    )
    assert (never.error or "").startswith("not started: the function had 0.0 s left")
    for record in groups["deferred"]:
        assert record.quarantine_key is None and record.output_keys == []
    # The manifest says so; the state holds only what was written, and claims nothing missing.
    stored = json.loads(dest.read(f"_runs/{first.run_id}.json"))
    assert stored["counts"]["deferred"] == 2
    assert any(n.startswith("deferred: 2 input(s) left for the next run") for n in stored["notes"])
    assert {d["path"] for d in first.summary()["deferred"]} == {stopped.path, never.path}
    assert len(state_entries(dest, "rel")) == 4 and missing_outputs(dest, "rel") == []
    assert len(data_keys(dest)) == 4

    # The next invocation does the rest: nothing lost, nothing done twice.
    with deadline.within(invocation(100)):
        second = run_sync(SyncRequest(pipeline=pipeline))
    groups = by_status(second)
    assert {s: len(r) for s, r in groups.items()} == {"written": 2, "skipped_unchanged": 4}
    assert {r.path for r in groups["written"]} == {stopped.path, never.path}
    assert sorted(data_keys(dest)) == sorted(f"rel/{name}" for name in names)  # the table rel
    assert missing_outputs(dest, "rel") == []


def test_an_input_longer_than_a_whole_invocation_fails_with_a_quarantine_copy(
    emulator: DriveEmulator, drive_root: Path, tmp_path: Path
) -> None:
    (drive_root / "huge.csv").write_text("id,seconds\nhuge,500\n")
    dest_url = str(tmp_path / "dest")
    pipeline = pipeline_for(dest_url, emulator.root_id)
    with deadline.within(invocation(300)):
        manifest = run_sync(SyncRequest(pipeline=pipeline))
    [record] = manifest.inputs
    assert record.status == "failed"
    assert record.error == (
        "OutOfTime: would exceed the function's remaining time: 0.0 s left, budget 290.0 s "
        "(10.0 s are kept to finish the run); it had the function's whole time to itself"
    )
    dest = open_storage(dest_url)
    assert dest.read(record.quarantine_key or "") == (drive_root / "huge.csv").read_bytes()
    assert data_keys(dest) == []
    # Unchanged, it is reported again without being processed (the clock does not move).
    before = CLOCK.now
    with deadline.within(invocation(300)):
        again = run_sync(SyncRequest(pipeline=pipeline))
    assert CLOCK.now == before
    [record] = again.inputs
    assert (record.error or "").startswith("unchanged since it failed in run")


def test_a_sync_that_planned_past_the_reserve_fetches_nothing_and_loses_nothing(
    emulator: DriveEmulator, drive_root: Path, tmp_path: Path
) -> None:
    write_files(drive_root, 3)
    dest_url = str(tmp_path / "dest")
    late = invocation(100)
    CLOCK.advance(95)  # listing and planning took the time
    with deadline.within(late):
        manifest = run_sync(SyncRequest(pipeline=pipeline_for(dest_url, emulator.root_id)))
    assert [r.status for r in manifest.inputs] == ["deferred"] * 3
    dest = open_storage(dest_url)
    assert state_entries(dest, "rel") == {} and data_keys(dest) == []
    with deadline.within(invocation(100)):
        after = run_sync(SyncRequest(pipeline=pipeline_for(dest_url, emulator.root_id)))
    assert [r.status for r in after.inputs] == ["written"] * 3


class TickingClock:
    """Moves one second every time it is read: how far a streamed input got is exact."""

    def __init__(self) -> None:
        self.now, self.reads = 0.0, 0

    def __call__(self) -> float:
        self.reads += 1
        self.now += 1
        return self.now


def stream_one(
    pipeline: Pipeline, data: bytes, seconds: float, dest_url: str
) -> tuple[InputRecord, int]:
    """``process_input`` on one big CSV within ``seconds`` of a ticking clock: the record, and
    how many times the clock was read."""
    clock = TickingClock()
    record = InputRecord(source_id="big", path="big.csv")
    limit = Deadline.after(seconds, source="test", clock=clock, reserve=0)
    with deadline.within(limit), deadline.for_input():
        process_input(pipeline, open_storage(dest_url), io.BytesIO(data), "csv", record, "r1")
    return record, clock.reads


def test_a_streamed_input_is_stopped_between_batches(tmp_path: Path) -> None:
    rows = "".join(f"{n},{n % 7}\n" for n in range(5000))
    data = f"id,amount\n{rows}".encode()
    streaming = {"threshold_mb": 0, "batch_rows": 100, "block_mb": 0.004, "infer_mb": 0}
    body = {"steps": [{"op": "normalize_columns"}], "output": {"url": "/unused"}}
    pipeline = parse_config({"pipelines": {"s": {**body, "streaming": streaming}}}).pipelines["s"]
    assert should_stream(pipeline, io.BytesIO(data), "csv")
    whole, reads = stream_one(pipeline, data, 1e9, str(tmp_path / "whole"))
    assert whole.status == "written" and whole.rows_out == 5000
    assert reads > 50  # a check per batch (and per step): 50 batches of 100 rows
    # Half the time a whole pass takes: stopped part-way, between batches; nothing written.
    half, half_reads = stream_one(pipeline, data, reads / 2, str(tmp_path / "half"))
    assert half.status == "failed" and (half.error or "").startswith("OutOfTime: would exceed")
    assert reads / 4 < half_reads <= reads / 2 + 2
    dest = open_storage(str(tmp_path / "half"))
    assert [o.key for o in dest.list() if not o.key.startswith("_")] == []
    assert dest.read(half.quarantine_key or "") == data


def test_an_upload_is_left_for_a_redelivery_or_fails_if_it_had_the_whole_time(
    tmp_path: Path,
) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    (incoming / "a.csv").write_text("id,seconds\na,20\n")
    pipeline = pipeline_for(str(tmp_path / "dest"))
    request = ObjectRequest(pipeline=pipeline, source_url=str(incoming), relpath="a.csv")
    late = invocation(100)
    CLOCK.advance(95)  # an earlier record of the same notification took the time
    with deadline.within(late), pytest.raises(RetryableError, match="not started"):
        run_object(request)
    with deadline.within(invocation(100)):
        assert run_object(request).inputs[0].status == "written"
    (incoming / "b.csv").write_text("id,seconds\nb,500\n")
    with deadline.within(invocation(100)):
        failed = run_object(ObjectRequest(pipeline, str(incoming), "b.csv")).inputs[0]
    assert failed.status == "failed" and "whole time to itself" in (failed.error or "")
    assert (
        open_storage(str(tmp_path / "dest")).read(failed.quarantine_key or "")
        == (incoming / "b.csv").read_bytes()
    )
