"""File and table names in the table layout: flat, never hidden, never shared, and stable."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from shared.drive.naming import id_tag
from shared.storage import layout, open_storage
from tests.core.conftest import xlsx_bytes
from tests.tables import duck
from tests.tables.conftest import Folder, pipeline, sync


def test_flat_names_that_clash_get_their_own_key_and_none_is_hidden(
    tmp_path: Path, folder: Folder
) -> None:
    files = {
        "a/b.csv": "region,n\nEU,1\n",
        "a__b.csv": "region,n\nEU,2\n",  # the same flat name as a/b.csv, and needs no change
        "_notes.csv": "region,n\nEU,3\n",  # Hive would hide a file named _notes.parquet
        "deep/er/x.csv": "region,n\nEU,4\n",
    }
    for relpath, text in files.items():
        folder.write(relpath, text)
    url = str(tmp_path / "lake")
    p = pipeline(url, schema={"columns": {}})
    manifest = sync(p, folder)
    keys = {r.path: r.output_keys for r in manifest.inputs}
    file_id = next(r.source_id for r in manifest.inputs if r.path == "a/b.csv")
    assert keys == {
        "a__b.csv": ["sales/region=EU/a__b.parquet"],
        "a/b.csv": [f"sales/region=EU/a__b~{id_tag(file_id)}.parquet"],
        "_notes.csv": ["sales/region=EU/notes.parquet"],
        "deep/er/x.csv": ["sales/region=EU/deep__er__x.parquet"],
    }
    assert all(not k.rsplit("/", 1)[-1].startswith(("_", ".")) for v in keys.values() for k in v)
    # The same names on the next runs, and every row once.
    assert all(r.status == "skipped_unchanged" for r in sync(p, folder).inputs)
    rows = duck.query(url, "sales", "SELECT _drive_path, n FROM {t} ORDER BY n")
    assert rows == [("a/b.csv", 1), ("a__b.csv", 2), ("_notes.csv", 3), ("deep/er/x.csv", 4)]


def test_one_table_per_sheet_name_beside_the_pipelines_table(
    tmp_path: Path, folder: Folder
) -> None:
    def sheet(region: str, n: int) -> pd.DataFrame:
        return pd.DataFrame({"region": [region], "n": [n]})

    (folder.root / "books").mkdir()
    (folder.root / "books/one.xlsx").write_bytes(
        xlsx_bytes({"Q1 Sales": sheet("EU", 1), "Costs": sheet("EU", 10)})
    )
    (folder.root / "books/two.xlsx").write_bytes(xlsx_bytes({"q1-sales": sheet("US", 2)}))
    folder.write("plain.csv", "region,n\nEU,100\n")
    url = str(tmp_path / "lake")
    p = pipeline(url, read={"excel": {"sheets": "all"}}, schema={"columns": {}})
    sync(p, folder)
    store = open_storage(url)
    tables = {o.key.split("/", 1)[0] for o in store.list() if o.key.endswith(".parquet")}
    assert tables == {"sales", "sales__q1_sales", "sales__costs"}  # siblings, never nested
    assert duck.query(url, "sales__q1_sales", "SELECT sum(n), count(*) FROM {t}") == [(3, 2)]
    assert duck.query(url, "sales", "SELECT sum(n) FROM {t}") == [(100,)]
    assert layout.table_name("sales", "Q1 Sales") == layout.table_name("sales", "q1-sales")
    assert layout.sheet_slug("Ventes été / 2024") == "ventes_t_2024"
