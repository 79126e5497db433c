"""The changes feed as the incremental path (source.changes_feed), on the Drive emulator.

An unchanged folder costs one changes.list and no walk; a change under the folder walks it
with the mirror semantics; a change elsewhere in the Drive does not; a refused token walks,
with a note; a run that could not download a file stores no position, so the next one walks.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from devstack.drive_emulator import DriveEmulator
from devstack.drive_emulator.faults import FaultConfig
from shared.drive import DriveClient
from shared.drive.retry import RetryPolicy
from shared.errors import DriveError
from shared.run.sync import SyncRequest, run_sync
from shared.storage import open_storage
from shared.storage.layout import sync_state_key
from tests.core import mirror_scenario as scenario


def feed_pipeline(url: str, drive: DriveEmulator, **source: Any) -> Any:
    body = {"source": {"folder_id": drive.id_for(scenario.FOLDER), "changes_feed": True, **source}}
    return scenario.pipeline(url, drive.id_for(scenario.FOLDER), **body)


def requests(drive: DriveEmulator) -> dict[str, int]:
    return dict(drive.stats.snapshot()["requests"])


def stored_feed(url: str) -> dict[str, Any]:
    return json.loads(open_storage(url).read(sync_state_key("lake")))["feed"]


def test_an_unchanged_folder_is_not_walked(storage_url: str, drive: DriveEmulator) -> None:
    pipeline = feed_pipeline(storage_url, drive)
    first = run_sync(SyncRequest(pipeline=pipeline))
    assert first.counts()["written"] == len(scenario.FILES)
    position = stored_feed(storage_url)
    assert position["folder"] == drive.id_for(scenario.FOLDER) and position["token"]
    assert drive.id_for("lake/keep") in position["folders"]
    drive.reset_stats()
    second = run_sync(SyncRequest(pipeline=pipeline))
    calls = requests(drive)
    assert "list" not in calls and sum(calls.values()) <= 3, calls
    assert second.counts()["skipped_unchanged"] == len(scenario.FILES)
    assert any("nothing changed" in note for note in second.notes)


def test_changes_under_the_folder_walk_it_with_the_mirror_rules(
    tmp_path: Path, drive: DriveEmulator
) -> None:
    url = str(tmp_path / "out")
    pipeline = feed_pipeline(url, drive)
    run_sync(SyncRequest(pipeline=pipeline))
    scenario.change(drive.tree.root)
    drive.reset_stats()
    second = run_sync(SyncRequest(pipeline=pipeline))
    assert any("under the folder; walked it" in note for note in second.notes)
    scenario.check_mirrored(url, second)
    assert requests(drive).get("media") == 2
    drive.reset_stats()
    third = run_sync(SyncRequest(pipeline=pipeline))
    assert "list" not in requests(drive)
    assert third.counts()["skipped_unchanged"] == len(scenario.AFTER)


def test_a_change_elsewhere_in_the_drive_is_not_a_reason_to_walk(
    tmp_path: Path, drive: DriveEmulator
) -> None:
    url = str(tmp_path / "out")
    pipeline = feed_pipeline(url, drive)
    run_sync(SyncRequest(pipeline=pipeline))
    (drive.tree.root / "elsewhere" / "deep").mkdir()
    (drive.tree.root / "elsewhere" / "deep" / "z.csv").write_text("region,units\nEU,1\n")
    drive.reset_stats()
    manifest = run_sync(SyncRequest(pipeline=pipeline))
    assert "list" not in requests(drive)
    assert any("nothing changed" in note for note in manifest.notes)
    # A file added to a folder the walk never saw (an empty one) is found through files.get.
    (drive.tree.root / scenario.FOLDER / "empty").mkdir()
    run_sync(SyncRequest(pipeline=pipeline))
    (drive.tree.root / scenario.FOLDER / "empty" / "late.csv").write_text("region,units\nUS,2\n")
    later = run_sync(SyncRequest(pipeline=pipeline))
    assert {r.path: r.status for r in later.inputs}["empty/late.csv"] == "written"


def test_a_refused_token_walks_with_a_note(tmp_path: Path, drive: DriveEmulator) -> None:
    url = str(tmp_path / "out")
    pipeline = feed_pipeline(url, drive)
    run_sync(SyncRequest(pipeline=pipeline))
    drive.set_faults(FaultConfig(expire_page_tokens=True))
    drive.reset_stats()
    manifest = run_sync(SyncRequest(pipeline=pipeline))
    assert any("token refused" in note for note in manifest.notes)
    assert requests(drive).get("list", 0) > 0
    drive.set_faults(FaultConfig())
    drive.reset_stats()
    run_sync(SyncRequest(pipeline=pipeline))
    assert "list" not in requests(drive)  # the walk stored a fresh token


def test_a_failed_download_stores_no_position(tmp_path: Path, drive: DriveEmulator) -> None:
    url = str(tmp_path / "out")
    pipeline = feed_pipeline(url, drive)
    drive.set_faults(FaultConfig(rate=1.0, kinds=("truncate",)))  # media bodies only
    impatient = DriveClient.from_env(retry=RetryPolicy(max_attempts=1))
    first = run_sync(SyncRequest(pipeline=pipeline), drive=impatient)
    assert first.failed
    drive.set_faults(FaultConfig())
    assert json.loads(open_storage(url).read(sync_state_key("lake"))).get("feed") is None
    second = run_sync(SyncRequest(pipeline=pipeline))
    assert second.counts()["written"] == len(scenario.FILES)


def test_file_changes_are_applied_without_a_walk(storage_url: str, drive: DriveEmulator) -> None:
    pipeline = feed_pipeline(storage_url, drive)
    run_sync(SyncRequest(pipeline=pipeline))
    lake = drive.tree.root / scenario.FOLDER
    os.rename(lake / "g.csv", lake / "elsewhere.csv")  # keep the scenario's files in the lake
    run_sync(SyncRequest(pipeline=pipeline))
    os.rename(lake / "elsewhere.csv", lake / "g.csv")
    run_sync(SyncRequest(pipeline=pipeline))
    scenario.change(drive.tree.root)
    os.rename(drive.tree.root / "elsewhere/g.csv", lake / "g.csv")  # no move out: no walk
    drive.reset_stats()
    manifest = run_sync(SyncRequest(pipeline=pipeline))
    calls = requests(drive)
    assert "list" not in calls and calls.get("media") == 2, calls
    assert any("applied unwalked" in note for note in manifest.notes), manifest.notes
    by_path = {r.path: r for r in manifest.inputs}
    assert by_path["keep/d2.csv"].status == "moved"
    assert by_path["other/e.csv"].status == "moved"
    assert by_path["keep/b.csv"].status == "removed"
    assert by_path["keep/c.csv"].status == "removed" and by_path["keep/c.csv"].reason == "trashed"
    assert by_path["keep/f.csv"].status == "written" and by_path["new.csv"].status == "written"
    assert by_path["g.csv"].status == "skipped_unchanged"
    expected = scenario.expected_keys() | {scenario.output_key("g.csv", 7), "_raw/g.csv"}
    assert scenario.data_keys(storage_url) == expected
    drive.reset_stats()
    again = run_sync(SyncRequest(pipeline=pipeline))
    assert "list" not in requests(drive)
    assert again.counts()["skipped_unchanged"] == len(scenario.AFTER) + 1


def test_a_feed_that_fails_part_way_decides_nothing(tmp_path: Path, drive: DriveEmulator) -> None:
    url = str(tmp_path / "out")
    pipeline = feed_pipeline(url, drive)
    run_sync(SyncRequest(pipeline=pipeline))
    before = {o.key: o.etag for o in open_storage(url).list() if not o.key.startswith("_locks/")}
    scenario.change(drive.tree.root)
    drive.set_faults(FaultConfig(rate=1.0, kinds=("503",)))
    impatient = DriveClient.from_env(retry=RetryPolicy(max_attempts=1))
    with pytest.raises(DriveError):
        run_sync(SyncRequest(pipeline=pipeline), drive=impatient)
    drive.set_faults(FaultConfig())
    after = {o.key: o.etag for o in open_storage(url).list() if not o.key.startswith("_locks/")}
    assert after == before


def test_a_shared_drive_uses_its_own_feed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "shared"
    scenario.build(root)
    with DriveEmulator(root, drive_id="0AsharedDrive01") as emulator:
        monkeypatch.setenv("DRIVE_API_URL", emulator.url)
        monkeypatch.setenv("DRIVE_ACCESS_TOKEN", "test-token")
        url = str(tmp_path / "out")
        pipeline = feed_pipeline(url, emulator)
        run_sync(SyncRequest(pipeline=pipeline))
        assert stored_feed(url)["drive_id"] == "0AsharedDrive01"
        (root / scenario.FOLDER / "keep/b.csv").unlink()
        emulator.reset_stats()
        manifest = run_sync(SyncRequest(pipeline=pipeline))
        assert "list" not in requests(emulator)
        assert {r.path: r.status for r in manifest.inputs}["keep/b.csv"] == "removed"


def test_a_change_to_a_shortcut_target_reaches_the_shortcut(
    tmp_path: Path, drive: DriveEmulator
) -> None:
    root = drive.tree.root
    (root / "elsewhere/target.csv").write_text("region,units\nEU,21\n")
    (root / scenario.FOLDER / "link.shortcut").write_text("")
    overrides = {"link.shortcut": {"name": "link.csv", "shortcutTarget": "elsewhere/target.csv"}}
    (root / scenario.FOLDER / ".drive.json").write_text(json.dumps({"entries": overrides}))
    url = str(tmp_path / "out")
    pipeline = feed_pipeline(url, drive)
    first = run_sync(SyncRequest(pipeline=pipeline))
    assert {r.path: r.status for r in first.inputs}["link.csv"] == "written"
    target = root / "elsewhere/target.csv"
    target.write_text("region,units\nEU,23\n")
    stat = target.stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    second = run_sync(SyncRequest(pipeline=pipeline))
    assert {r.path: r.status for r in second.inputs}["link.csv"] == "written"
    table = pd.read_parquet(io.BytesIO(open_storage(url).read("lake/region=EU/link.parquet")))
    assert table["units"].tolist() == [23]


def test_a_walk_is_due_after_reconcile_every_hours(tmp_path: Path, drive: DriveEmulator) -> None:
    url = str(tmp_path / "out")
    pipeline = feed_pipeline(url, drive, reconcile_every_hours=24)
    run_sync(SyncRequest(pipeline=pipeline))
    store = open_storage(url)
    raw = json.loads(store.read(sync_state_key("lake")))
    raw["feed"]["walked_at"] = "2026-01-01T00:00:00.000Z"
    store.write(sync_state_key("lake"), json.dumps(raw).encode())
    drive.reset_stats()
    manifest = run_sync(SyncRequest(pipeline=pipeline))
    assert any("last full walk over 24 h ago" in note for note in manifest.notes)
    assert requests(drive).get("list", 0) > 0
    drive.reset_stats()
    run_sync(SyncRequest(pipeline=pipeline))
    assert "list" not in requests(drive)
