"""Mirror semantics end to end: the Drive emulator over HTTP → local, S3 (moto) and GCS.

Moves and renames keep their ids in the emulator (``os.rename``), as in Drive: their outputs
move storage-side with no download; deleted, trashed and moved-out files lose their outputs
and raw copies; the manifest names each. Then the safety rules: a listing that fails part-way
deletes nothing, the removal guard stops a mass deletion, ``on_removed = "keep"`` keeps.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.drive_emulator import DriveEmulator
from shared.drive import DriveClient, DriveFile
from shared.errors import DriveError
from shared.run.mirror import relocated_key
from shared.run.sync import SyncRequest, run_sync
from shared.storage import open_storage
from shared.storage.layout import sync_state_key
from tests.core import mirror_scenario as scenario


def lake_pipeline(url: str, drive: DriveEmulator, **extra: Any) -> Any:
    return scenario.pipeline(url, drive.id_for(scenario.FOLDER), **extra)


def media_downloads(drive: DriveEmulator) -> int:
    return int(drive.stats.snapshot()["requests"].get("media", 0))


def state_paths(url: str) -> set[str]:
    raw = json.loads(open_storage(url).read(sync_state_key("lake")))
    return {entry["path"] for entry in raw["inputs"].values()}


def test_a_second_sync_mirrors_moves_and_removals(storage_url: str, drive: DriveEmulator) -> None:
    pipeline = lake_pipeline(storage_url, drive)
    first = run_sync(SyncRequest(pipeline=pipeline))
    assert first.counts()["written"] == len(scenario.FILES)
    scenario.change(drive.tree.root)
    drive.reset_stats()
    second = run_sync(SyncRequest(pipeline=pipeline))
    scenario.check_mirrored(storage_url, second)
    assert media_downloads(drive) == 2  # the edited file and the new one, nothing moved
    assert state_paths(storage_url) == set(scenario.AFTER)
    stored = json.loads(open_storage(storage_url).read(f"_runs/{second.run_id}.json"))
    assert stored["counts"]["moved"] == 2 and stored["counts"]["removed"] == 3
    third = run_sync(SyncRequest(pipeline=pipeline))  # nothing left to mirror
    assert set(third.counts().items()) >= {("skipped_unchanged", 8), ("removed", 0), ("moved", 0)}


def test_a_dry_run_shows_moves_and_removals_and_changes_nothing(
    tmp_path: Path, drive: DriveEmulator
) -> None:
    url = str(tmp_path / "out")
    pipeline = lake_pipeline(url, drive)
    run_sync(SyncRequest(pipeline=pipeline))
    before = {o.key: o.etag for o in open_storage(url).list()}
    scenario.change(drive.tree.root)
    dry = run_sync(SyncRequest(pipeline=pipeline, dry_run=True))
    by_path = {r.path: r.status for r in dry.inputs}
    assert {p: by_path[p] for p in scenario.MOVES} == dict.fromkeys(scenario.MOVES, "moved")
    assert {p: by_path[p] for p in scenario.REMOVALS} == dict.fromkeys(scenario.REMOVALS, "removed")
    assert {o.key: o.etag for o in open_storage(url).list()} == before


class FailingWalk:
    """A Drive client whose listing yields a few files, then fails (as a 5xx storm would)."""

    def __init__(self, inner: DriveClient, after: int) -> None:
        self.inner, self.after = inner, after

    def walk(self, folder_id: str, **kwargs: Any) -> Iterator[DriveFile]:
        for n, file in enumerate(self.inner.walk(folder_id, **kwargs)):
            if n == self.after:
                raise DriveError("backend error", status=503, reason="backendError")
            yield file

    def limited(self, max_in_flight: int) -> FailingWalk:
        """The engine lists through a bounded view of its client: it fails the same way."""
        return FailingWalk(self.inner.limited(max_in_flight), self.after)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_listing_that_fails_part_way_deletes_nothing(
    tmp_path: Path, drive: DriveEmulator
) -> None:
    url = str(tmp_path / "out")
    pipeline = lake_pipeline(url, drive)
    run_sync(SyncRequest(pipeline=pipeline))
    before = {o.key: o.etag for o in open_storage(url).list() if not o.key.startswith("_locks/")}
    scenario.change(drive.tree.root)
    failing = FailingWalk(DriveClient.from_env(), after=3)
    with pytest.raises(DriveError):
        run_sync(SyncRequest(pipeline=pipeline, force_removals=True), drive=failing)  # type: ignore[arg-type]
    after = {o.key: o.etag for o in open_storage(url).list() if not o.key.startswith("_locks/")}
    assert after == before  # no output, raw copy, state or manifest touched


def test_the_removal_guard_stops_a_mass_deletion(tmp_path: Path, drive: DriveEmulator) -> None:
    url = str(tmp_path / "out")
    pipeline = lake_pipeline(url, drive, mirror={"max_removed": 2})
    run_sync(SyncRequest(pipeline=pipeline))
    kept = scenario.data_keys(url)
    lake = drive.tree.root / scenario.FOLDER
    for relpath in ("keep/a.csv", "keep/b.csv", "other/h.csv"):
        (lake / relpath).unlink()
    blocked = run_sync(SyncRequest(pipeline=pipeline))
    assert blocked.counts()["removal_blocked"] == 3
    assert blocked.removals_blocked and "max_removed = 2" in blocked.removals_blocked
    assert blocked.summary()["removals_blocked"] == blocked.removals_blocked
    assert scenario.data_keys(url) == kept
    again = run_sync(SyncRequest(pipeline=pipeline))  # still blocked: the state kept them
    assert again.counts()["removal_blocked"] == 3
    forced = run_sync(SyncRequest(pipeline=pipeline, force_removals=True))
    assert forced.counts()["removed"] == 3 and forced.removals_blocked is None
    removed = ("keep/a.", "keep/b.", "other/h.", "keep__a.", "keep__b.", "other__h.")
    gone = {k for k in kept if any(s in k for s in removed)}  # raw copies and table outputs
    assert len(gone) == 6 and scenario.data_keys(url) == kept - gone


def test_the_fraction_guard(tmp_path: Path, drive: DriveEmulator) -> None:
    url = str(tmp_path / "out")
    pipeline = lake_pipeline(url, drive, mirror={"max_removed_fraction": 0.2})
    run_sync(SyncRequest(pipeline=pipeline))
    lake = drive.tree.root / scenario.FOLDER
    for relpath in ("keep/a.csv", "keep/b.csv", "other/h.csv"):
        (lake / relpath).unlink()
    blocked = run_sync(SyncRequest(pipeline=pipeline))
    assert blocked.removals_blocked and "3 of 10" in blocked.removals_blocked
    # A full refresh re-reads everything but is no licence to delete past the guard...
    refreshed = run_sync(SyncRequest(pipeline=pipeline, full_refresh=True))
    assert refreshed.counts()["removal_blocked"] == 3 and refreshed.counts()["removed"] == 0
    forced = run_sync(SyncRequest(pipeline=pipeline, force_removals=True))  # ...this is
    assert forced.counts()["removed"] == 3


def test_on_removed_keep_keeps_the_outputs(tmp_path: Path, drive: DriveEmulator) -> None:
    url = str(tmp_path / "out")
    pipeline = lake_pipeline(url, drive, mirror={"on_removed": "keep"})
    run_sync(SyncRequest(pipeline=pipeline))
    (drive.tree.root / scenario.FOLDER / "keep/b.csv").unlink()
    kept = scenario.data_keys(url)
    manifest = run_sync(SyncRequest(pipeline=pipeline))
    record = next(r for r in manifest.inputs if r.path == "keep/b.csv")
    assert record.status == "removed_kept" and record.deleted_keys == []
    assert record.output_keys == ["lake/region=US/keep__b.parquet"]
    assert scenario.data_keys(url) == kept
    assert "keep/b.csv" not in state_paths(url)  # reported once, then forgotten
    later = run_sync(SyncRequest(pipeline=pipeline))
    assert later.counts()["removed_kept"] == 0


def test_relocated_keys() -> None:
    from shared.storage.layout import relocated_table_key

    assert relocated_table_key("t/r=EU/a__b.parquet", "a/b.csv", "c/d.csv") == "t/r=EU/c__d.parquet"
    assert relocated_table_key("t/a__b~1a2b.parquet", "a/b.csv", "c.csv") is None  # renamed
    assert relocated_key("a/b.parquet", "a/b.csv", "c/d.csv") == "c/d.parquet"
    assert relocated_key("r=EU/a/b.parquet", "a/b.csv", "x.csv") == "r=EU/x.parquet"
    assert relocated_key("book/North.csv", "book.xlsx", "old/book.xlsx") == "old/book/North.csv"
    assert relocated_key("elsewhere/b.parquet", "a/b.csv", "c.csv") is None


def test_a_sync_of_an_alias_folder_mirrors_nothing(tmp_path: Path, drive: DriveEmulator) -> None:
    url = str(tmp_path / "out")
    sub_folder = drive.id_for("lake/keep")
    pipeline = lake_pipeline(url, drive)
    source = pipeline.source.model_copy(update={"alias_folder_ids": (sub_folder,)})
    pipeline = pipeline.model_copy(update={"source": source})
    run_sync(SyncRequest(pipeline=pipeline))
    kept = scenario.data_keys(url)
    sub = run_sync(SyncRequest(pipeline=pipeline, folder_id=sub_folder))
    counts = sub.counts()
    assert counts["moved"] == counts["removed"] == counts["removal_blocked"] == 0, counts
    assert any("nothing mirrored" in note for note in sub.notes)
    assert kept <= scenario.data_keys(url)


def test_a_sync_of_another_folder_has_its_own_state_and_outputs(
    tmp_path: Path, drive: DriveEmulator
) -> None:
    url = str(tmp_path / "out")
    pipeline = lake_pipeline(url, drive)
    run_sync(SyncRequest(pipeline=pipeline))
    before = {p: p.read_bytes() for p in sorted((tmp_path / "out").rglob("*")) if p.is_file()}
    sub_folder = drive.id_for("lake/keep")
    sub = run_sync(SyncRequest(pipeline=pipeline, folder_id=sub_folder))
    assert sub.counts()["written"] > 0 and sub.counts()["removed"] == 0
    assert sub.destination == f"{url}/_folders/{sub_folder}"
    assert any("its own state and outputs" in note for note in sub.notes), sub.notes
    after = {p: p.read_bytes() for p in sorted((tmp_path / "out").rglob("*")) if p.is_file()}
    mine = {p: b for p, b in after.items() if "_folders" not in p.parts}
    assert mine == before  # the pipeline's outputs and state: byte-identical
    assert (tmp_path / "out" / "_folders" / sub_folder / "_state" / "lake.json").exists()


def test_a_narrowed_listing_removes_nothing(tmp_path: Path, drive: DriveEmulator) -> None:
    """What the CLI's --include on a configured pipeline does: files outside it stay."""
    url = str(tmp_path / "out")
    pipeline = lake_pipeline(url, drive)
    run_sync(SyncRequest(pipeline=pipeline))
    kept = scenario.data_keys(url)
    source = pipeline.source.model_copy(update={"include": ("keep/a.csv",)})
    narrowed = pipeline.model_copy(update={"source": source})
    reason = "listing narrowed by --include / --exclude"
    manifest = run_sync(SyncRequest(pipeline=narrowed, listing_narrowed=reason))
    assert manifest.counts()["removed"] == 0
    assert any(reason in note for note in manifest.notes), manifest.notes
    assert scenario.data_keys(url) == kept
    assert len(state_paths(url)) > 1  # the state still knows the files outside the listing
