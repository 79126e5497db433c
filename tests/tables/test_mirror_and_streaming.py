"""The mirror rules on a table, a streamed input that widens its table, layout migration, and
``drivepipe schema show|diff``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from shared.cli import main
from shared.storage import open_storage
from shared.transform.tables.conform import arrow_schema
from tests.tables import duck
from tests.tables.conftest import STAGES, Folder, pipeline, schema_doc, sync, table_files


def test_a_removed_files_rows_leave_and_a_moved_files_rows_appear_once(
    storage_url: str, folder: Folder
) -> None:
    p = pipeline(storage_url)
    for n in range(3):
        for relpath, text in STAGES[n].items():
            folder.write(relpath, text)
    sync(p, folder)
    # Drive: q1 is moved (same id, new path), q2 is deleted.
    (folder.root / "archive").mkdir()
    os.rename(folder.root / "2024/q1.csv", folder.root / "archive/q1_old.csv")
    (folder.root / "2024/q2.csv").unlink()
    folder.emulator.reset_stats()
    manifest = sync(p, folder)
    statuses = {r.path: r.status for r in manifest.inputs}
    assert statuses == {
        "archive/q1_old.csv": "moved",
        "2024/q2.csv": "removed",
        "2025/q3.csv": "skipped_unchanged",
    }
    assert folder.emulator.stats.snapshot()["requests"].get("media", 0) == 0  # no download

    rows = duck.query(
        storage_url,
        "sales",
        "SELECT _drive_path, count(*), sum(price) FROM {t} GROUP BY 1 ORDER BY 1",
    )
    assert rows == [("2025/q3.csv", 1, 5.0), ("archive/q1_old.csv", 2, 7.0)]
    files = table_files(storage_url, "sales")
    assert sorted(files) == [
        "sales/region=EU/2025__q3.parquet",
        "sales/region=EU/archive__q1_old.parquet",
        "sales/region=US/archive__q1_old.parquet",
    ]
    table = schema_doc(storage_url).tables["sales"]
    assert all(s.equals(arrow_schema(table)) for s in files.values())


def test_a_streamed_input_conforms_and_widens_its_table(tmp_path: Path, folder: Folder) -> None:
    """Streamed in 50-row batches: ``discount`` has values only from row 180 on, so the table
    gains it mid-stream and the input starts over; its rows and types equal the whole-file
    path's."""
    rows = ["region,product,price,units,discount"]
    rows += [f"EU,p{n},{n % 7},{n % 3},{'' if n < 180 else '0.25'}" for n in range(200)]
    text = "\n".join(rows) + "\n"
    folder.write("big/stream.csv", text)
    folder.write("2024/q1.csv", STAGES[0]["2024/q1.csv"])
    streamed = str(tmp_path / "streamed")
    whole = str(tmp_path / "whole")
    streaming = {"threshold_mb": 0.0001, "batch_rows": 50, "block_mb": 0.001}
    first = sync(pipeline(streamed, streaming=streaming), folder)
    sync(pipeline(whole), folder)
    assert {r.path: r.status for r in first.inputs} == {
        "big/stream.csv": "written",
        "2024/q1.csv": "written",
    }
    a, b = schema_doc(streamed).tables["sales"], schema_doc(whole).tables["sales"]
    assert {c.name: c.type for c in a.columns} == {c.name: c.type for c in b.columns}
    assert {c.name: c.type for c in a.columns}["discount"] == "float64"
    for url in (streamed, whole):
        files = table_files(url, "sales")
        table = schema_doc(url).tables["sales"]
        assert all(s.equals(arrow_schema(table)) for s in files.values())
        [(count, discount, price)] = duck.query(
            url, "sales", "SELECT count(*), sum(discount), sum(price) FROM {t}"
        )
        assert (count, discount) == (202, 20 * 0.25)
        assert price == sum(n % 7 for n in range(200)) + 7


def test_outputs_of_the_files_layout_move_to_the_table_layout(
    tmp_path: Path, folder: Folder
) -> None:
    url = str(tmp_path / "lake")
    for relpath, text in STAGES[0].items():
        folder.write(relpath, text)
    sync(pipeline(url, output={"layout": "files"}, schema={"columns": {}}), folder)
    store = open_storage(url)
    old = sorted(o.key for o in store.list() if o.key.endswith(".parquet"))
    assert old == ["region=EU/2024/q1.parquet", "region=US/2024/q1.parquet"]
    manifest = sync(pipeline(url), folder)
    [record] = manifest.inputs
    assert record.status == "written"  # fetched again, written in the new layout
    now = sorted(o.key for o in store.list() if o.key.endswith(".parquet"))
    assert now == ["sales/region=EU/2024__q1.parquet", "sales/region=US/2024__q1.parquet"]
    assert sync(pipeline(url), folder).inputs[0].status == "skipped_unchanged"


def test_schema_show_and_diff(
    tmp_path: Path, folder: Folder, capsys: pytest.CaptureFixture[str]
) -> None:
    url = str(tmp_path / "lake")
    config = tmp_path / "p.toml"
    config.write_text(
        f"""
[pipelines.sales]
source = {{ folder_id = "{folder.folder_id}" }}
output = {{ url = "{url}", partition_by = ["region"] }}
schema = {{ columns = {{ units = "int64" }} }}
"""
    )
    for n in range(3):
        for relpath, text in STAGES[n].items():
            folder.write(relpath, text)
        assert main(["sync", "--config", str(config), "--json"]) == 0
    capsys.readouterr()
    assert main(["schema", "show", "--config", str(config)]) == 0
    shown = capsys.readouterr().out
    assert f"table sales  version 3  file://{url}/sales/" in shown
    assert "  units                 int64  (declared)" in shown
    assert "  region                string  (partition)" in shown
    assert "widened price int64 → float64" in shown and "added discount float64" in shown
    assert main(["schema", "diff", "--config", str(config)]) == 0
    diff: Any = capsys.readouterr().out
    assert diff.splitlines()[0] == "table sales: v2 → v3"
    assert "added discount float64" in diff and "widened" not in diff
    assert main(["schema", "diff", "--config", str(config), "--from", "1"]) == 0
    assert "widened price int64 → float64" in capsys.readouterr().out


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_streamed_text_table_carries_lineage_and_escapes_it(
    tmp_path: Path, folder: Folder, fmt: str
) -> None:
    rows = "region,n\n" + "".join(f"EU,{n}\n" for n in range(120))
    folder.write("=risky/big.csv", rows)
    url = str(tmp_path / "lake")
    streaming = {"threshold_mb": 0.0001, "batch_rows": 50, "block_mb": 0.001}
    p = pipeline(url, streaming=streaming, output={"format": fmt}, schema={"columns": {}})
    [record] = sync(p, folder).inputs
    assert record.status == "written", record.error
    [key] = record.output_keys
    text = open_storage(url).read(key).decode()
    lines = text.splitlines()
    assert len(lines) == 120 + (fmt == "csv")
    if fmt == "csv":
        assert lines[0].startswith('"_drive_id","_drive_path","_drive_modified_time"')
        assert ',"\'=risky/big.csv",' in lines[1]  # a formula-like Drive path is escaped
    else:
        assert '"_drive_path":"=risky\\/big.csv"' in lines[0]
