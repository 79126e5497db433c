"""Tables end to end, on a local directory, S3 (moto server) and GCS (the emulator).

Files whose inferred types drift, one that adds a column and one that breaks the contract go
through one pipeline, stage by stage. Then every Parquet file of the table has the table's
schema, DuckDB reads the whole table with ONE ``read_parquet`` over its location (no
``union_by_name``) and gets the right counts and sums, and the schema's history lists each
change.
"""

from __future__ import annotations

import pytest

from shared.transform.tables.conform import arrow_schema
from tests.tables import duck
from tests.tables.conftest import (
    DISCOUNT,
    PRICE,
    ROWS,
    STAGES,
    UNITS,
    Folder,
    pipeline,
    schema_doc,
    sync,
    table_files,
)


def test_a_drifting_folder_reads_as_one_table(storage_url: str, folder: Folder) -> None:
    p = pipeline(storage_url)
    manifests = []
    for stage in STAGES:
        for relpath, text in stage.items():
            folder.write(relpath, text)
        manifests.append(sync(p, folder))

    # The contract breaker failed alone, naming the column and the types.
    last = manifests[-1]
    [breaker] = last.failed
    assert breaker.path == "bad/breaker.csv"
    assert breaker.error is not None
    assert "'units' is declared int64 in schema.columns; this input has string" in breaker.error
    assert breaker.quarantine_key

    # One schema, every file in it (column names, order and Arrow types).
    doc = schema_doc(storage_url)
    table = doc.tables["sales"]
    assert [c.name for c in table.columns] == [
        "_drive_id", "_drive_path", "_drive_modified_time",
        "units", "product", "price", "discount",
    ]  # fmt: skip
    assert {c.name: c.type for c in table.columns}["price"] == "float64"
    files = table_files(storage_url, "sales")
    assert sorted(files) == [
        "sales/region=EU/2024__q1.parquet",
        "sales/region=EU/2024__q2.parquet",
        "sales/region=EU/2025__q3.parquet",
        "sales/region=US/2024__q1.parquet",
        "sales/region=US/2024__q2.parquet",
    ]
    expected = arrow_schema(table)
    assert all(schema.equals(expected) for schema in files.values()), files

    # The schema's history lists each change, with the input that made it.
    history = [(h["version"], h["input"], [c["op"] for c in h["changes"]]) for h in table.history]
    assert history == [
        (1, "2024/q1.csv", ["create"]),
        (2, "2024/q2.csv", ["widen"]),
        (3, "2025/q3.csv", ["add"]),
    ]
    assert table.history[1]["changes"][0] == {
        "op": "widen", "column": "price", "from": "int64", "to": "float64",
    }  # fmt: skip

    # DuckDB: one read_parquet over the location, no union_by_name, right count and sums.
    [(rows, price, units, discount, regions)] = duck.query(
        storage_url,
        "sales",
        "SELECT count(*), sum(price), sum(units), sum(discount), "
        "string_agg(DISTINCT region, ',' ORDER BY region) FROM {t}",
    )
    assert (rows, price, units, discount, regions) == (ROWS, PRICE, UNITS, DISCOUNT, "EU,US")
    by_file = duck.query(
        storage_url,
        "sales",
        "SELECT _drive_path, count(*) FROM {t} GROUP BY _drive_path ORDER BY _drive_path",
    )
    assert by_file == [("2024/q1.csv", 2), ("2024/q2.csv", 2), ("2025/q3.csv", 1)]

    # The manifest says what each input did to the table.
    second = next(r for r in manifests[1].inputs if r.path == "2024/q2.csv")
    assert second.tables == [
        {
            "table": "sales",
            "version": 2,
            "changes": [{"op": "widen", "column": "price", "from": "int64", "to": "float64"}],
        }
    ]


@pytest.mark.parametrize("contract", ["freeze", "discard_columns"])
def test_contract_modes(tmp_path: object, folder: Folder, contract: str) -> None:
    url = str(tmp_path) + "/lake"
    p = pipeline(url, schema={"contract": contract})
    folder.write("2024/q1.csv", STAGES[0]["2024/q1.csv"])
    sync(p, folder)
    folder.write("2024/q2.csv", STAGES[1]["2024/q2.csv"])  # price would widen
    folder.write("2025/q3.csv", "region,product,price,units,discount\nEU,e,5,2,0.5\n")
    manifest = sync(p, folder)
    by_path = {r.path: r for r in manifest.inputs}
    widened = by_path["2024/q2.csv"]
    assert widened.status == "failed" and widened.error is not None
    assert f"'price' would widen from int64 to float64 (contract {contract})" in widened.error
    extra = by_path["2025/q3.csv"]
    table = schema_doc(url).tables["sales"]
    assert table.version == 1  # the table never changed
    assert "discount" not in [c.name for c in table.columns]
    if contract == "freeze":
        assert extra.status == "failed"
        assert extra.error and "new column 'discount' (float64) (contract freeze)" in extra.error
    else:
        assert extra.status == "written"
        assert extra.tables[0]["dropped"] == {
            "discount": "not in the table (contract discard_columns)"
        }
    [(rows,)] = duck.query(url, "sales", "SELECT count(*) FROM {t}")
    assert rows == (2 if contract == "freeze" else 3)


def test_lineage_can_be_turned_off(tmp_path: object, folder: Folder) -> None:
    url = str(tmp_path) + "/lake"
    folder.write("2024/q1.csv", STAGES[0]["2024/q1.csv"])
    sync(pipeline(url, schema={"lineage": False}), folder)
    table = schema_doc(url).tables["sales"]
    assert [c.name for c in table.columns] == ["units", "product", "price"]
    [(columns,)] = duck.query(
        url,
        "sales",
        "SELECT count(*) FROM (DESCRIBE SELECT * FROM {t}) WHERE starts_with(column_name, '_')",
    )
    assert columns == 0
