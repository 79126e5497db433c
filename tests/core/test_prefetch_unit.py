"""The narrow logic of early downloads: which files may start early, and what becomes of
early downloads the plan does not fetch (a stand-in client; events, no sleeps)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import pytest

from shared.config import parse_config
from shared.drive import DriveFile, FetchResult
from shared.run.context import SyncContext, SyncRequest
from shared.run.fetch import scratch_file
from shared.run.prefetch import Downloads, fetch_predictor
from shared.run.state import InputState, SyncState

WAIT = 10.0


def drive_file(
    name: str, *, file_id: str | None = None, md5: str = "m", size: int = 10
) -> DriveFile:
    return DriveFile(
        id=file_id or f"id-{name}",
        name=name,
        path=name,
        mime_type="text/csv",
        size=size,
        md5=md5,
        modified_time="2026-01-01T00:00:00Z",
        native=False,
    )


def entry(path: str, md5: str = "m") -> InputState:
    return InputState(md5=md5, modified_time=None, size=10, path=path, output_keys=[], run_id="r")


def context(tmp_path: Path, state: SyncState, **request: Any) -> SyncContext:
    body = {"source": {"folder_id": "root"}, "output": {"url": str(tmp_path)}}
    pipeline = parse_config({"pipelines": {"p": body}}).pipelines["p"]
    return SyncContext(
        SyncRequest(pipeline=pipeline, **request),
        "root",
        None,
        None,
        "run",
        state,
        None,  # type: ignore[arg-type]
    )


def test_only_files_the_plan_will_certainly_fetch_start_early(tmp_path: Path) -> None:
    state = SyncState("p", "d")
    state.inputs = {
        "id-same.csv:same.csv": entry("same.csv"),
        "id-edited.csv:edited.csv": entry("edited.csv", md5="old"),
        "id-moved:old/moved.csv": entry("old/moved.csv"),
    }
    will_fetch = fetch_predictor(context(tmp_path, state))
    assert will_fetch(drive_file("new.csv"))
    assert will_fetch(drive_file("edited.csv"))
    assert not will_fetch(drive_file("same.csv"))  # unchanged: skipped
    assert not will_fetch(drive_file("moved.csv", file_id="id-moved"))  # maybe a move: waits
    text = DriveFile(**{**vars(drive_file("notes.txt")), "mime_type": "text/plain"})
    assert not will_fetch(text)  # no format the pipeline takes
    skipped = DriveFile(**{**vars(drive_file("doc.csv")), "skip_reason": "native doc"})
    assert not will_fetch(skipped)

    full = fetch_predictor(context(tmp_path, state, full_refresh=True))
    assert full(drive_file("same.csv")) and full(drive_file("moved.csv", file_id="id-moved"))
    dry = fetch_predictor(context(tmp_path, state, dry_run=True))
    assert not dry(drive_file("new.csv"))


class GatedDrive:
    """Writes a file's name as its bytes once that file's gate opens (all open by default)."""

    def __init__(self) -> None:
        self.gates: dict[str, threading.Event] = {}
        self.started: dict[str, threading.Event] = {}
        self.fetched: list[str] = []
        self.slots = None

    def limited(self, max_in_flight: int) -> GatedDrive:
        return self

    def gate(self, name: str) -> threading.Event:
        return self.gates.setdefault(name, threading.Event())

    def fetch_into(
        self, file: DriveFile, open_dest: Callable[[DriveFile], IO[bytes]], fmt: str
    ) -> FetchResult:
        self.started.setdefault(file.name, threading.Event()).set()
        if file.name in self.gates:
            assert self.gates[file.name].wait(WAIT)
        with open_dest(file) as dest:
            dest.write(file.name.encode())
        self.fetched.append(file.name)
        return FetchResult(file.id, file.path, file.mime_type, len(file.name), False, 1)


def test_early_downloads_are_handed_over_and_unplanned_ones_dropped(tmp_path: Path) -> None:
    drive = GatedDrive()
    a, b, c = (drive_file(f"{n}.csv") for n in "abc")
    drive.gate("a.csv")  # a runs (and blocks) on the one worker; b queues behind it
    with Downloads(drive, concurrency=1, budget_bytes=100) as downloads:  # type: ignore[arg-type]
        assert downloads.offer(a) and downloads.offer(b)
        assert drive.started["a.csv"].wait(WAIT)
        # The plan fetches a and c: b (queued) is cancelled, c starts now, into open_dest.
        results = downloads.fetch_many([a, c], downloads.open_scratch)
        drive.gates["a.csv"].set()
        got = {file.name: result for file, result in results}
        assert set(got) == {"a.csv", "c.csv"}
        for name in ("a.csv", "c.csv"):
            path = scratch_file(downloads.scratch, drive_file(name))
            assert Path(path).read_bytes() == name.encode()
        assert not os.path.exists(scratch_file(downloads.scratch, b))
        assert drive.fetched == ["a.csv", "c.csv"]  # b never downloaded
        assert downloads.early_fetches == 2 and downloads.early_unused == 1
        scratch = downloads.scratch
    assert not os.path.exists(scratch)  # leaving removes the scratch directory


def test_an_early_download_already_running_is_deleted_when_it_ends(tmp_path: Path) -> None:
    drive = GatedDrive()
    a, b = drive_file("a.csv"), drive_file("b.csv")
    drive.gate("a.csv")
    scratch = tmp_path / "scratch"  # the caller's: it outlives the downloads
    scratch.mkdir()
    with Downloads(drive, concurrency=2, budget_bytes=100, scratch=str(scratch)) as downloads:  # type: ignore[arg-type]
        assert downloads.offer(a)
        assert drive.started["a.csv"].wait(WAIT)
        results = downloads.fetch_many([b], downloads.open_scratch)
        assert [file.name for file, _ in results] == ["b.csv"]
        drive.gates["a.csv"].set()  # a ends only now, after the plan dropped it
    assert "a.csv" in drive.fetched
    assert not os.path.exists(scratch_file(str(scratch), a))  # deleted once it ended
    assert os.path.exists(scratch_file(str(scratch), b))  # b is the consumer's to remove


def test_early_downloads_stop_at_the_budget() -> None:
    drive = GatedDrive()
    with Downloads(drive, concurrency=2, budget_bytes=25) as downloads:  # type: ignore[arg-type]
        assert downloads.offer(drive_file("a.csv", size=10))
        assert downloads.offer(drive_file("b.csv", size=10))
        assert not downloads.offer(drive_file("c.csv", size=10))  # 30 > 25: after the plan
        assert not downloads.offer(drive_file("a.csv", size=10))  # already started
        results = dict(
            (f.name, r)
            for f, r in downloads.fetch_many(
                [drive_file(n, size=10) for n in ("a.csv", "b.csv", "c.csv")],
                downloads.open_scratch,
            )
        )
    assert set(results) == {"a.csv", "b.csv", "c.csv"}
    assert sorted(drive.fetched) == ["a.csv", "b.csv", "c.csv"]  # each exactly once


def test_wanted_filters_offers() -> None:
    drive = GatedDrive()
    wanted = lambda f: f.name != "skip.csv"  # noqa: E731
    with Downloads(drive, concurrency=1, wanted=wanted, budget_bytes=100) as downloads:  # type: ignore[arg-type]
        assert not downloads.offer(drive_file("skip.csv"))
        assert downloads.offer(drive_file("take.csv"))


@pytest.mark.parametrize("mb, expected", [("0", 0), ("1.5", 1_500_000)])
def test_the_budget_comes_from_the_runtime_settings(
    monkeypatch: pytest.MonkeyPatch, mb: str, expected: int
) -> None:
    monkeypatch.setenv("DRIVEPIPE_PREFETCH_MB", mb)
    with Downloads(GatedDrive(), concurrency=1) as downloads:  # type: ignore[arg-type]
        assert downloads.budget_bytes == expected


def test_a_pipelines_default_concurrency_is_the_clients() -> None:
    from shared.drive.client import DEFAULT_CONCURRENCY

    body = {"output": {"url": "/tmp/x"}}
    pipeline = parse_config({"pipelines": {"p": body}}).pipelines["p"]
    assert pipeline.concurrency == DEFAULT_CONCURRENCY == 16
