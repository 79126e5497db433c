"""End-to-end pipeline runs: the real Drive emulator → readers/transforms → real storage servers."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from shared.config import Pipeline, parse_config
from shared.errors import StorageError, is_transient
from shared.run.manifest import RunManifest
from shared.run.single import ObjectRequest, run_object
from shared.run.sync import SyncRequest, run_sync
from shared.storage import open_storage
from tests.core.conftest import SALES_Q1, DriveTree

SALES_STEPS: list[dict[str, Any]] = [
    {"op": "normalize_columns"},
    {"op": "cast", "columns": {"units": "int64", "unit_price": "float64"}},
    {"op": "derive", "column": "revenue", "expr": "units * unit_price"},
    {"op": "filter", "expr": "units > 0"},
]
SALES_INCLUDE = ["sales/**", "europe/**", "broken/**", "book.xlsx"]


def make_pipeline(
    url: str,
    *,
    steps: list[dict[str, Any]] | None = None,
    include: list[str] | None = None,
    read: dict[str, Any] | None = None,
    **output: Any,
) -> Pipeline:
    body: dict[str, Any] = {
        "source": {"include": SALES_INCLUDE if include is None else include},
        "steps": SALES_STEPS if steps is None else steps,
        "output": {"url": url, **output},
    }
    if read:
        body["read"] = read
    return parse_config({"pipelines": {"sales": body}}).pipelines["sales"]


def sync(pipeline: Pipeline, tree: DriveTree, **kwargs: Any) -> RunManifest:
    return run_sync(SyncRequest(pipeline=pipeline, folder_id=tree.folder_id, **kwargs))


def statuses(manifest: RunManifest) -> dict[str, str]:
    return {r.path: r.status for r in manifest.inputs}


def read_parquet(url: str, key: str) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(open_storage(url).read(key)))


def data_objects(url: str) -> dict[str, Any]:
    """Every non-bookkeeping object with its etag/size (to detect rewrites)."""
    return {
        o.key: (o.etag, o.size, o.updated)
        for o in open_storage(url).list()
        if not o.key.startswith(("_runs/", "_locks/"))
    }


def test_sync_writes_transforms_and_quarantines(storage_url: str, drive_tree: DriveTree) -> None:
    manifest = sync(make_pipeline(storage_url), drive_tree)
    assert statuses(manifest) == {
        "sales/2024/q1.csv": "written",
        "sales/2024/q2.csv": "written",
        "europe/ventes_été.csv": "written",
        "book.xlsx": "written",
        "broken/bad.csv": "failed",
    }
    q1 = read_parquet(storage_url, "sales/sales__2024__q1.parquet")
    assert q1["order_id"].tolist() == [1, 3]  # units > 0 filtered order 2 out
    assert q1["revenue"].tolist() == [7.5, 5.0]
    ventes = read_parquet(storage_url, "sales/europe__ventes_été.parquet")
    assert ventes["unit_price"].tolist() == [3.5, 2.0]  # sniffed ';' and latin-1
    # The malformed file fails alone, with its error, and its exact bytes are quarantined.
    [bad] = manifest.failed
    assert bad.error and "ReadError" in bad.error
    assert bad.quarantine_key == f"_quarantine/{manifest.run_id}/broken/bad.csv"
    store = open_storage(storage_url)
    assert store.read(bad.quarantine_key) == (drive_tree.root / "broken" / "bad.csv").read_bytes()
    assert not store.exists("sales/broken__bad.parquet")
    stored = json.loads(store.read(f"_runs/{manifest.run_id}.json"))
    assert {i["path"]: i["status"] for i in stored["inputs"]} == statuses(manifest)
    assert stored["counts"]["failed"] == 1
    record = next(r for r in manifest.inputs if r.path == "sales/2024/q1.csv")
    assert (record.rows_in, record.rows_out) == (3, 2)
    assert [s["op"] for s in record.steps] == [s["op"] for s in SALES_STEPS]


def test_same_pipeline_gives_identical_outputs_on_local_s3_and_gcs(
    drive_tree: DriveTree, tmp_path: Path, s3_bucket: str, gcs_bucket: str
) -> None:
    urls = [str(tmp_path / "local-out"), f"s3://{s3_bucket}/lake", f"gs://{gcs_bucket}/lake"]
    frames: list[dict[str, pd.DataFrame]] = []
    for url in urls:
        manifest = sync(make_pipeline(url), drive_tree)
        keys = sorted(k for r in manifest.inputs for k in r.output_keys)
        assert len(keys) == 4
        frames.append({k: read_parquet(url, k) for k in keys})
    local, *others = frames
    for other in others:
        assert other.keys() == local.keys()
        for key in local:
            pd.testing.assert_frame_equal(other[key], local[key])


def test_rerun_writes_nothing_and_a_change_reprocesses_only_that_file(
    drive_tree: DriveTree, s3_bucket: str
) -> None:
    url = f"s3://{s3_bucket}/lake"
    pipeline = make_pipeline(url, include=["sales/**", "europe/**", "book.xlsx"])
    first = sync(pipeline, drive_tree)
    assert set(statuses(first).values()) == {"written"}
    before = data_objects(url)

    second = sync(pipeline, drive_tree)
    assert set(statuses(second).values()) == {"skipped_unchanged"}
    assert data_objects(url) == before  # not one data or state object rewritten

    drive_tree.write("sales/2024/q1.csv", SALES_Q1 + "10,EU,1,100.0\n")
    third = sync(pipeline, drive_tree)
    changed = {p for p, s in statuses(third).items() if s == "written"}
    assert changed == {"sales/2024/q1.csv"}
    assert read_parquet(url, "sales/sales__2024__q1.parquet")["order_id"].tolist() == [1, 3, 10]

    full = sync(pipeline, drive_tree, full_refresh=True)
    assert set(statuses(full).values()) == {"written"}


def test_changed_definition_reprocesses_everything(drive_tree: DriveTree, tmp_path: Path) -> None:
    url = str(tmp_path / "out")
    sync(make_pipeline(url, include=["sales/**"]), drive_tree)
    steps = [*SALES_STEPS, {"op": "limit", "n": 1}]
    again = sync(make_pipeline(url, include=["sales/**"], steps=steps), drive_tree)
    assert set(statuses(again).values()) == {"written"}
    assert len(read_parquet(url, "sales/sales__2024__q1.parquet")) == 1


def test_dry_run_plans_and_writes_nothing(drive_tree: DriveTree, tmp_path: Path) -> None:
    url = str(tmp_path / "out")
    manifest = sync(make_pipeline(url), drive_tree, dry_run=True)
    assert set(statuses(manifest).values()) == {"planned"}
    assert manifest.summary()["manifest"] is None
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*"))


def test_native_sheet_exported_doc_skipped_trashed_never_listed(
    drive_tree: DriveTree, tmp_path: Path
) -> None:
    url = str(tmp_path / "out")
    manifest = sync(make_pipeline(url, include=[], steps=[]), drive_tree)
    found = statuses(manifest)
    assert "old.csv" not in found  # trashed
    assert found["targets"] == "written"
    assert read_parquet(url, "sales/targets.parquet")["target"].tolist() == [100, 200]
    doc = next(r for r in manifest.inputs if r.path == "notes")
    assert doc.status == "skipped_unsupported"
    assert doc.error


def test_excel_all_sheets_partitions_and_keep_raw(drive_tree: DriveTree, tmp_path: Path) -> None:
    url = str(tmp_path / "out")
    pipeline = make_pipeline(
        url,
        include=["book.xlsx", "sales/**"],
        read={"excel": {"sheets": "all"}},
        partition_by=["region"],
        keep_raw=True,
    )
    manifest = sync(pipeline, drive_tree)
    book = next(r for r in manifest.inputs if r.path == "book.xlsx")
    assert sorted(book.output_keys) == [
        "sales__north/region=EU/book.parquet",  # one table per sheet name
        "sales__south/region=US/book.parquet",
    ]
    north = read_parquet(url, "sales__north/region=EU/book.parquet")
    assert "region" not in north.columns and north["order_id"].tolist() == [8]
    q1 = next(r for r in manifest.inputs if r.path == "sales/2024/q1.csv")
    assert q1.output_keys == [
        "sales/region=EU/sales__2024__q1.parquet"
    ]  # the US row was filtered out
    assert open_storage(url).read("_raw/sales/2024/q1.csv") == SALES_Q1.encode()


def test_run_object_transforms_one_file_from_a_bucket(s3_bucket: str, tmp_path: Path) -> None:
    incoming = open_storage(f"s3://{s3_bucket}/incoming")
    incoming.write("team a/sales q1.csv", SALES_Q1.encode())
    out = str(tmp_path / "out")
    manifest = run_object(
        ObjectRequest(
            pipeline=make_pipeline(out),
            source_url=f"s3://{s3_bucket}/incoming",
            relpath="team a/sales q1.csv",
        )
    )
    [record] = manifest.inputs
    assert record.status == "written"
    assert record.output_keys == ["sales/team a__sales q1.parquet"]
    assert read_parquet(out, "sales/team a__sales q1.parquet")["revenue"].tolist() == [7.5, 5.0]


def test_run_object_quarantines_a_malformed_upload(s3_bucket: str, tmp_path: Path) -> None:
    incoming = open_storage(f"s3://{s3_bucket}/incoming")
    incoming.write("bad.csv", b"\x00\x01\x02binary\xff\xfe")
    out = str(tmp_path / "out")
    manifest = run_object(
        ObjectRequest(
            pipeline=make_pipeline(out), source_url=f"s3://{s3_bucket}/incoming", relpath="bad.csv"
        )
    )
    [record] = manifest.failed
    assert open_storage(out).read(record.quarantine_key or "") == b"\x00\x01\x02binary\xff\xfe"


def test_run_object_names_the_store_it_cannot_reach(tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    request = ObjectRequest(pipeline=make_pipeline(out), source_url="ftp://h/in", relpath="a.csv")
    with pytest.raises(StorageError, match=r"^source ftp://h/in is not reachable: ") as info:
        run_object(request)
    assert is_transient(info.value)  # StorageError: the one rule redelivers it
    pipeline = make_pipeline(out)  # a URL the config would refuse, to reach open_storage
    broken = pipeline.model_copy(
        update={"output": pipeline.output.model_copy(update={"url": "ftp://h/out"})}
    )
    with pytest.raises(StorageError, match=r"^destination ftp://h/out is not reachable: "):
        run_object(ObjectRequest(pipeline=broken, source_url=out, relpath="a.csv"))


def test_unchanged_bad_file_is_reported_again_but_quarantined_once(
    drive_tree: DriveTree, tmp_path: Path
) -> None:
    url = str(tmp_path / "out")
    pipeline = make_pipeline(url, include=["broken/**", "sales/**"], steps=[])
    first = sync(pipeline, drive_tree)
    [failed] = first.failed
    second = sync(pipeline, drive_tree)
    [again] = second.failed
    assert again.quarantine_key == failed.quarantine_key
    assert again.error and first.run_id in again.error
    quarantined = [o.key for o in open_storage(url).list("_quarantine/")]
    assert quarantined == [failed.quarantine_key]
    drive_tree.write("broken/bad.csv", "a,b\n1,2\n")  # fixed at the source: processed again
    third = sync(pipeline, drive_tree)
    assert statuses(third)["broken/bad.csv"] == "written"
