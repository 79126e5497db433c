"""A sync downloads while it still lists, under one in-flight bound, and writes as before.

Against the Drive emulator over HTTP. Order is shown with the emulator's request log; the
listing of one folder is held back until a download has begun (an event, not a sleep), so a
sync that only downloads after its walk cannot pass. The bound is read from the client's own
counter (:class:`shared.drive.inflight.RequestSlots`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.drive_emulator import DriveEmulator, RequestEvent
from shared.config import Pipeline, parse_config
from shared.drive import client as drive_client
from shared.drive.inflight import RequestSlots
from shared.run.manifest import RunManifest
from shared.run.sync import SyncRequest, run_sync
from shared.storage import open_storage

CSV = "region,units\nEU,{n}\n"
FILES = {
    **{f"r{n}.csv": CSV.format(n=n) for n in range(4)},  # at the root: listed first
    "x.csv": CSV.format(n=10),  # x.csv and x.json both want x.parquet: both yield
    "x.json": '[{"region": "US", "units": 11}]',
    "Dup.csv": CSV.format(n=12),  # Dup.csv and dup.csv: both tagged dup~ by the listing
    "dup.csv": CSV.format(n=13),
    "sub\\b.csv": CSV.format(n=14),  # sanitises to sub/b: the clean sub/b.csv keeps the key
    **{f"late/l{n}.csv": CSV.format(n=20 + n) for n in range(3)},
    "sub/b.csv": CSV.format(n=15),
    "sub/deeper/c.csv": CSV.format(n=16),
}
HOLD_S = 20.0  # the held listing waits at most this long for a download to begin


@pytest.fixture
def emulator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DriveEmulator]:
    root = tmp_path / "drive"
    for relpath, text in FILES.items():
        (root / relpath).parent.mkdir(parents=True, exist_ok=True)
        (root / relpath).write_text(text)
    with DriveEmulator(root) as emu:
        monkeypatch.setenv("DRIVE_API_URL", emu.url)
        monkeypatch.setenv("DRIVE_ACCESS_TOKEN", "test-token")
        monkeypatch.delenv("DRIVE_API_KEY", raising=False)
        yield emu


@pytest.fixture
def slots(monkeypatch: pytest.MonkeyPatch) -> list[RequestSlots]:
    """Every in-flight bound a client makes during the test (the sync's own counter)."""
    made: list[RequestSlots] = []

    class Recorded(RequestSlots):
        def __init__(self, limit: int) -> None:
            super().__init__(limit)
            made.append(self)

    monkeypatch.setattr(drive_client, "RequestSlots", Recorded)
    return made


def hold_listing(emu: DriveEmulator, folder: str, timeout: float = HOLD_S) -> threading.Event:
    """Answer files.list for ``folder`` only once a download has begun (or ``timeout``)."""
    downloading = threading.Event()
    late_id = emu.id_for(folder)
    enter, list_files = emu.stats.enter, emu.api.list_files

    def entered(endpoint: str = "", subject: str = "") -> None:
        enter(endpoint, subject)
        if endpoint == "media":
            downloading.set()

    def listed(params: Any, base_url: str, partial: str | None = None) -> dict[str, Any]:
        if late_id in params.raw.get("q", ""):
            downloading.wait(timeout)
        return list_files(params, base_url, partial)

    emu.stats.enter = entered  # type: ignore[method-assign]
    emu.api.list_files = listed  # type: ignore[method-assign]
    return downloading


def pipeline(url: str, folder_id: str, concurrency: int = 2) -> Pipeline:
    body = {
        "source": {"folder_id": folder_id, "formats": ["csv", "json"]},
        "output": {"url": url},
        "concurrency": concurrency,
    }
    return parse_config({"pipelines": {"p": body}}).pipelines["p"]


def first(log: list[RequestEvent], phase: str, endpoint: str) -> int:
    return next(e.seq for e in log if (e.phase, e.endpoint) == (phase, endpoint))


def last(log: list[RequestEvent], phase: str, endpoint: str) -> int:
    return max(e.seq for e in log if (e.phase, e.endpoint) == (phase, endpoint))


def kinds_in_flight_together(log: list[RequestEvent]) -> set[frozenset[str]]:
    """Every set of endpoints that were being served at one moment."""
    open_now: dict[tuple[str, str], int] = {}
    seen = set()
    for event in log:
        key = (event.endpoint, event.subject)
        open_now[key] = open_now.get(key, 0) + (1 if event.phase == "start" else -1)
        seen.add(frozenset(k[0] for k, n in open_now.items() if n > 0))
    return seen


def test_downloads_begin_before_the_walk_ends_under_one_bound(
    tmp_path: Path, emulator: DriveEmulator, slots: list[RequestSlots]
) -> None:
    hold_listing(emulator, "late")
    manifest = run_sync(SyncRequest(pipeline=pipeline(str(tmp_path / "out"), emulator.root_id)))
    log = emulator.stats.request_log()

    # A file found at the root was being downloaded before the last folder's listing was
    # answered: the walk and the downloads overlapped.
    assert first(log, "start", "media") < last(log, "end", "list")
    assert frozenset({"list", "media"}) in kinds_in_flight_together(log)
    # ...and never more requests in flight than the pipeline's concurrency, both kinds together.
    bounds = [s for s in slots if s.limit == 2]
    assert bounds and all(s.max_in_use <= 2 for s in bounds)
    assert max(s.max_in_use for s in bounds) == 2  # listing and a download took both slots
    assert manifest.counts()["written"] == len(FILES)
    assert manifest.counts()["failed"] == 0


def test_without_early_downloads_none_begins_before_the_walk_ends(
    tmp_path: Path, emulator: DriveEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check above can fail: with DRIVEPIPE_PREFETCH_MB=0 the held listing times out."""
    monkeypatch.setenv("DRIVEPIPE_PREFETCH_MB", "0")
    downloading = hold_listing(emulator, "late", timeout=2.0)
    run_sync(SyncRequest(pipeline=pipeline(str(tmp_path / "out"), emulator.root_id)))
    log = emulator.stats.request_log()
    assert downloading.is_set()  # downloads did happen, but only once the walk was over
    assert first(log, "start", "media") > last(log, "end", "list")


def _outputs(url: str) -> dict[str, bytes]:
    store = open_storage(url)
    return {
        o.key: store.read(o.key)
        for o in store.list()
        if not o.key.startswith(("_runs/", "_locks/", "_state/"))
    }


def _records(manifest: RunManifest) -> list[tuple[Any, ...]]:
    return sorted(
        (r.path, r.status, tuple(r.output_keys), r.output_path, r.renamed, r.md5, r.rows_out)
        for r in manifest.inputs
    )


def test_a_pipelined_sync_writes_what_a_listed_first_sync_writes(
    tmp_path: Path, emulator: DriveEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same keys (duplicates and clashes tagged alike), bytes and records, on both runs."""
    pipelined = run_sync(SyncRequest(pipeline=pipeline(str(tmp_path / "a"), emulator.root_id)))
    monkeypatch.setenv("DRIVEPIPE_PREFETCH_MB", "0")
    listed_first = run_sync(SyncRequest(pipeline=pipeline(str(tmp_path / "b"), emulator.root_id)))

    assert _records(pipelined) == _records(listed_first)
    a, b = _outputs(str(tmp_path / "a")), _outputs(str(tmp_path / "b"))
    assert a.keys() == b.keys()
    assert {k: len(v) for k, v in a.items()} == {k: len(v) for k, v in b.items()}
    renamed = {r.path: r.output_path for r in pipelined.inputs if r.renamed}
    assert set(renamed) == {"x.csv", "x.json", "sub\\b.csv"}  # the clean sub/b.csv kept its key
    assert {r.path for r in pipelined.inputs if r.path.startswith(("Dup~", "dup~"))} == {
        r.path for r in listed_first.inputs if r.path.startswith(("Dup~", "dup~"))
    }


def test_a_second_sync_downloads_only_what_changed(tmp_path: Path, emulator: DriveEmulator) -> None:
    """Unchanged files are not downloaded early; a changed and a new one are, once each."""
    url = str(tmp_path / "out")
    run_sync(SyncRequest(pipeline=pipeline(url, emulator.root_id)))
    root = emulator.tree.root
    (root / "r0.csv").write_text(CSV.format(n=100))
    (root / "late" / "new.csv").write_text(CSV.format(n=101))
    emulator.reset_stats()
    second = run_sync(SyncRequest(pipeline=pipeline(url, emulator.root_id)))
    media = [e.subject for e in emulator.stats.request_log() if e.endpoint == "media"]
    assert len(media) == 2 * 2  # start and end of two downloads
    assert {emulator.id_for("r0.csv"), emulator.id_for("late/new.csv")} == set(media)
    assert second.counts()["written"] == 2
    assert second.counts()["skipped_unchanged"] == len(FILES) - 1
