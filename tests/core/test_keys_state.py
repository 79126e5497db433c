"""Output keys, run manifests and incremental state, on a real local directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.config import adhoc_pipeline, parse_config
from shared.run.manifest import RUN_ID_PATTERN, InputRecord, RunManifest, new_run_id
from shared.run.state import InputState, SyncState, definition_hash, event_seen, mark_event
from shared.storage import layout, open_storage


@pytest.mark.parametrize(
    ("relpath", "ext", "sheet", "partition", "expected"),
    [
        ("sales/2024/q1.csv", ".parquet", None, (), "sales/2024/q1.parquet"),
        ("targets", ".parquet", None, (), "targets.parquet"),  # native sheet: no extension
        ("data.v2.CSV", ".csv.gz", None, (), "data.v2.csv.gz"),
        ("book.xlsx", ".parquet", "North", (), "book/North.parquet"),
        (
            "a/b.csv",
            ".parquet",
            None,
            (("region", "EU"), ("year", "2024")),
            "region=EU/year=2024/a/b.parquet",
        ),
        ("../../etc/passwd", ".parquet", None, (), "etc/passwd.parquet"),
        ("/abs/x.csv", ".jsonl", None, (), "abs/x.jsonl"),
    ],
)
def test_output_keys_are_deterministic_and_stay_inside(
    relpath: str, ext: str, sheet: str | None, partition: tuple, expected: str
) -> None:
    key = layout.output_key(relpath, ext, sheet=sheet, partition=partition)
    assert key == expected
    assert ".." not in key.split("/") and not key.startswith("/")


def test_reserved_prefixes() -> None:
    assert layout.is_reserved("_runs/x.json")
    assert layout.is_reserved("sales/_state/x.json")
    assert not layout.is_reserved("incoming/_runs.csv")
    assert layout.quarantine_key("r1", "bad/../x.csv").startswith("_quarantine/r1/")


def test_an_output_never_lands_in_the_bookkeeping() -> None:
    """A Drive folder named ``_state`` (or ``_folders``...) gets a key outside the prefixes."""
    for prefix in layout.RESERVED_PREFIXES:
        key = layout.output_key(f"{prefix}rel.csv", ".json")
        assert key == f"~{prefix}rel.json" and not key.startswith(layout.RESERVED_PREFIXES)
    assert layout.output_key("_statex/a.csv", ".csv") == "_statex/a.csv"
    assert layout.output_key("a/_state/b.csv", ".csv") == "a/_state/b.csv"
    assert layout.folder_scope("1AbC") == "_folders/1AbC/"
    assert layout.is_reserved(layout.folder_scope("1AbC") + "x.csv")


def test_every_bookkeeping_key_is_reserved() -> None:
    run, item = "20260101T000000Z-0123abcd", "i00001"
    keys = {
        layout.run_key(run): f"_runs/{run}.json",
        layout.plan_key(run): f"_runs/{run}/plan.json",
        layout.result_key(run, item): f"_runs/{run}/items/{item}.json",
        layout.error_key(run, item): f"_runs/{run}/errors/{item}.json",
        layout.progress_key(run): f"_runs/{run}/progress.json",
        layout.sync_state_key("p"): "_state/p.json",
        layout.lock_epoch_key(layout.sync_lock("p"), 2): "_locks/sync/p/000000000002.json",
        layout.lock_epoch_key(layout.finalize_lock(run), 1): f"_locks/finalize/{run}/"
        "000000000001.json",
        layout.raw_key("a/b.csv"): "_raw/a/b.csv",
    }
    for built, expected in keys.items():
        assert built == expected
        assert layout.is_reserved(built)
    marker = layout.event_marker_key("s3:b/k#1")
    assert marker.startswith("_state/events/") and layout.is_reserved(marker)
    claim = layout.lock_prefix(layout.event_lock("s3:b/k#1"))
    assert claim == f"_locks/events/{marker.removeprefix('_state/events/')[:-5]}/"


def test_manifest_counts_and_summary() -> None:
    run_id = new_run_id()
    assert RUN_ID_PATTERN.match(run_id)
    manifest = RunManifest(
        run_id=run_id, pipeline="p", trigger="cli", source="drive:x", destination="s3://b/p"
    )
    manifest.inputs += [
        InputRecord("1", "a.csv", status="written", rows_out=3, bytes_out=10),
        InputRecord("2", "b.csv", status="failed", error="ReadError: bad", quarantine_key="q"),
        InputRecord("3", "c.gdoc", status="skipped_unsupported"),
    ]
    summary = manifest.summary()
    assert summary["counts"] == {
        "written": 1,
        "skipped_unchanged": 0,
        "skipped_unsupported": 1,
        "failed": 1,
        "moved": 0,
        "removed": 0,
        "removed_kept": 0,
        "removal_blocked": 0,
        "deferred": 0,
    }
    assert summary["rows_out"] == 3
    assert summary["failed"] == [
        {"path": "b.csv", "error": "ReadError: bad", "quarantine_key": "q"}
    ]
    assert summary["manifest"] == f"s3://b/p/_runs/{run_id}.json"
    assert json.loads(manifest.to_json())["inputs"][1]["status"] == "failed"


def test_state_roundtrip_and_change_detection(tmp_path: Path) -> None:
    storage = open_storage(str(tmp_path))
    state = SyncState.load(storage, "p", "def1")
    assert state.inputs == {}
    state.record(
        "f1",
        InputState(
            md5="m1",
            modified_time="t1",
            size=5,
            path="a.csv",
            output_keys=["a.parquet"],
            run_id="r",
        ),
    )
    state.record(
        "g1",
        InputState(
            md5=None,
            modified_time="t9",
            size=None,
            path="sheet",
            output_keys=["sheet.parquet"],
            run_id="r",
        ),
    )
    state.save(storage)
    again = SyncState.load(storage, "p", "def1")
    assert again.is_unchanged("f1", md5="m1", modified_time="other", size=5)
    assert not again.is_unchanged("f1", md5="m2", modified_time="t1", size=5)
    assert not again.is_unchanged("f1", md5="m1", modified_time="t1", size=6)
    assert again.is_unchanged("g1", md5=None, modified_time="t9", size=None)  # native: by time
    assert not again.is_unchanged("g1", md5=None, modified_time="t10", size=None)
    assert not again.is_unchanged("new", md5="m1", modified_time="t1", size=5)
    assert SyncState.load(storage, "p", "def2").inputs == {}  # definition changed: start over


def test_definition_hash_tracks_what_shapes_outputs() -> None:
    base = adhoc_pipeline(output_url="s3://b/x")
    moved = adhoc_pipeline(output_url="s3://b/elsewhere")
    csv = adhoc_pipeline(output_url="s3://b/x", output_format="csv")
    assert definition_hash(base) == definition_hash(moved)
    assert definition_hash(base) != definition_hash(csv)
    with_step = parse_config(
        {
            "pipelines": {
                "adhoc": {"output": {"url": "s3://b/x"}, "steps": [{"op": "limit", "n": 1}]}
            }
        }
    ).pipelines["adhoc"]
    assert definition_hash(base) != definition_hash(with_step)


def test_event_markers_are_claimed_once(tmp_path: Path) -> None:
    storage = open_storage(str(tmp_path))
    assert not event_seen(storage, "s3://b/k#v1")
    assert mark_event(storage, "s3://b/k#v1", "run1")
    assert not mark_event(storage, "s3://b/k#v1", "run2")
    assert event_seen(storage, "s3://b/k#v1")
    assert not event_seen(storage, "s3://b/k#v2")
