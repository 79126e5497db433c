"""Table schemas without storage: types and their ladder, the contracts, conformance, rewrites.

Runs in ``make test-lambda-compat`` too (pandas 2.2 / pyarrow 20 of the Lambda layer).
"""

from __future__ import annotations

import io

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shared.config import parse_config
from shared.errors import ConfigError, ContractError
from shared.transform.tables.conform import (
    Lineage,
    arrow_schema,
    conform,
    observe_frame,
    parquet_bytes,
    rewrite_parquet,
)
from shared.transform.tables.options import SchemaOptions
from shared.transform.tables.schema import TableSchema, reconcile
from shared.transform.tables.types import from_arrow, hive_type, to_arrow, widen

LINEAGE = ("_drive_id", "_drive_path", "_drive_modified_time")


def options(**kwargs: object) -> SchemaOptions:
    return SchemaOptions.model_validate(kwargs)


def names(table: TableSchema) -> list[str]:
    return [c.name for c in table.columns]


def types(table: TableSchema) -> dict[str, object]:
    return {c.name: c.type for c in table.columns}


# ---- types ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("arrow", "expected"),
    [
        (pa.int8(), "int64"),
        (pa.uint32(), "int64"),
        (pa.float32(), "float64"),
        (pa.large_string(), "string"),
        (pa.dictionary(pa.int32(), pa.string()), "string"),
        (pa.date64(), "date"),
        (pa.timestamp("ns"), "timestamp"),
        (pa.timestamp("s", tz="Europe/Paris"), "timestamp_tz"),
        (pa.decimal128(10, 2), "decimal(10,2)"),
        (pa.list_(pa.int32()), {"list": "int64"}),
        (pa.struct([("a", pa.float32())]), {"struct": [["a", "float64"]]}),
        (pa.null(), None),
    ],
)
def test_every_arrow_type_maps_to_one_table_type(arrow: pa.DataType, expected: object) -> None:
    assert from_arrow(arrow) == expected
    if expected is not None:
        assert from_arrow(to_arrow(expected)) == expected  # round trip


def test_timestamps_are_stored_in_microseconds_that_every_engine_reads() -> None:
    assert to_arrow("timestamp") == pa.timestamp("us")
    assert to_arrow("timestamp_tz") == pa.timestamp("us", tz="UTC")


@pytest.mark.parametrize(
    ("current", "incoming", "wider"),
    [
        ("int64", "float64", "float64"),
        ("float64", "int64", "float64"),  # the table already holds it
        ("int64", "string", "string"),
        ("date", "timestamp", "timestamp"),
        ("timestamp", "date", "timestamp"),
        ("date", "float64", "string"),
        ("bool", "int64", "string"),
        ({"list": "int64"}, {"list": "int64"}, {"list": "int64"}),
        ({"list": "int64"}, {"list": "string"}, None),
        ({"list": "int64"}, "string", None),
    ],
)
def test_the_widening_ladder(current: object, incoming: object, wider: object) -> None:
    assert widen(current, incoming) == wider


def test_hive_types_for_glue() -> None:
    assert [hive_type(t) for t in ("int64", "float64", "bool", "timestamp_tz")] == [
        "bigint",
        "double",
        "boolean",
        "timestamp",
    ]
    assert hive_type({"list": {"struct": [["a", "int64"]]}}) == "array<struct<a:bigint>>"


# ---- the contract --------------------------------------------------------------------------
def test_a_new_table_has_lineage_then_declared_then_inferred_columns() -> None:
    outcome = reconcile(
        None,
        "sales",
        [("region", "string"), ("price", "int64"), ("empty", None)],
        options(columns={"price": "float64", "id": "int64"}),
    )
    table = outcome.table
    assert names(table) == [*LINEAGE, "price", "id", "region"]
    assert types(table)["price"] == "float64"  # declared: the input's int64 is cast
    assert table.version == 1 and outcome.changes[0]["op"] == "create"
    assert outcome.dropped == {"empty": "all null and not in the table (added once it has values)"}


def test_evolve_adds_columns_and_widens_types_with_a_new_version() -> None:
    first = reconcile(None, "t", [("price", "int64")], options()).table
    same = reconcile(first, "t", [("price", "int64"), ("note", None)], options())
    assert same.table is first and same.changes == []  # nothing new: no new version
    outcome = reconcile(first, "t", [("price", "float64"), ("discount", "float64")], options())
    assert outcome.table.version == 2
    assert types(outcome.table)["price"] == "float64"
    assert names(outcome.table)[-1] == "discount"
    assert outcome.changes == [
        {"op": "widen", "column": "price", "from": "int64", "to": "float64"},
        {"op": "add", "column": "discount", "type": "float64"},
    ]


def test_freeze_refuses_new_columns_and_wider_types_naming_them() -> None:
    first = reconcile(None, "t", [("price", "int64")], options(contract="freeze")).table
    with pytest.raises(ContractError) as caught:
        reconcile(
            first, "t", [("price", "float64"), ("extra", "string")], options(contract="freeze")
        )
    message = str(caught.value)
    assert "'price' would widen from int64 to float64 (contract freeze)" in message
    assert "new column 'extra' (string) (contract freeze)" in message
    # A narrower input is cast, not refused.
    assert reconcile(first, "t", [("price", "int64")], options(contract="freeze")).changes == []


def test_discard_columns_drops_extras_and_still_refuses_wider_types() -> None:
    rules = options(contract="discard_columns")
    first = reconcile(None, "t", [("price", "float64")], rules).table
    outcome = reconcile(first, "t", [("price", "int64"), ("extra", "string")], rules)
    assert outcome.table is first
    assert outcome.dropped == {"extra": "not in the table (contract discard_columns)"}
    with pytest.raises(ContractError, match="would widen"):
        reconcile(first, "t", [("price", "string")], rules)


def test_declared_columns_never_widen_and_the_first_input_creates_the_table() -> None:
    rules = options(columns={"price": "int64"})
    first = reconcile(None, "t", [("price", "int64")], rules).table
    with pytest.raises(ContractError, match=r"declared int64 in schema\.columns"):
        reconcile(first, "t", [("price", "float64")], rules)
    frozen = options(columns={"price": "float64"}, contract="freeze")
    created = reconcile(None, "t", [("price", "int64"), ("other", "string")], frozen).table
    assert names(created) == [*LINEAGE, "price", "other"]
    with pytest.raises(ContractError, match="new column 'more'"):
        reconcile(created, "t", [("more", "string")], frozen)


def test_no_rule_and_lineage_names_fail_clearly() -> None:
    first = reconcile(None, "t", [("tags", {"list": "string"})], options()).table
    with pytest.raises(ContractError, match="no rule widens"):
        reconcile(first, "t", [("tags", "string")], options())
    with pytest.raises(ContractError, match="lineage column name"):
        reconcile(None, "t", [("_drive_id", "string")], options())
    off = reconcile(None, "t", [("_drive_id", "string")], options(lineage=False)).table
    assert names(off) == ["_drive_id"]


def test_turning_lineage_off_resets_the_table() -> None:
    first = reconcile(None, "t", [("a", "int64")], options()).table
    outcome = reconcile(first, "t", [("a", "int64")], options(lineage=False))
    assert names(outcome.table) == ["a"] and outcome.table.version == 2
    assert outcome.changes[0]["op"] == "reset"


def test_partition_columns_stay_out_of_the_files() -> None:
    frame = pd.DataFrame({"region": ["EU"], "units": [1]})
    assert observe_frame(frame, exclude=["region"]) == [("units", "int64")]
    with pytest.raises(ConfigError, match="partition columns"):
        parse_config(
            {
                "pipelines": {
                    "p": {
                        "output": {"url": "/tmp/x", "partition_by": ["region"]},
                        "schema": {"columns": {"region": "string"}},
                    }
                }
            }
        )


def test_all_null_columns_have_no_type_yet() -> None:
    frame = pd.DataFrame({"a": [1, 2], "b": [None, None], "c": pd.array([None, None], "Int64")})
    assert observe_frame(frame) == [("a", "int64"), ("b", None), ("c", None)]


# ---- conformance ---------------------------------------------------------------------------
def test_conform_orders_casts_fills_and_sets_lineage() -> None:
    table = reconcile(
        None, "t", [("price", "float64"), ("when", "timestamp"), ("region", "string")], options()
    ).table
    data = pa.table(
        {
            "region": pa.array(["EU", "US"], pa.large_string()),
            "price": pa.array([1, 2], pa.int64()),
            "when": pa.array([0, 1_500], pa.timestamp("ns")),
            "ignored": [1, 2],
        }
    )
    lineage = Lineage("id1", "sales/q1.csv", "2024-05-01T10:00:00.000Z")
    result = conform(data, table, lineage)
    assert result.column_names == [c.name for c in table.columns]
    # Lineage text is dictionary-encoded in memory; a table's file stores it as a string column.
    assert result.schema.field("_drive_path").type == pa.dictionary(pa.int32(), pa.string())
    written = pq.read_table(io.BytesIO(parquet_bytes(result, None)))
    assert written.schema.equals(arrow_schema(table))
    assert result.column("price").to_pylist() == [1.0, 2.0]
    assert result.column("_drive_path").to_pylist() == ["sales/q1.csv"] * 2
    assert str(result.column("_drive_modified_time")[0]) == "2024-05-01 10:00:00+00:00"
    assert result.column("when").type == pa.timestamp("us")  # sub-microseconds dropped


def test_conform_names_the_column_a_value_does_not_fit() -> None:
    table = reconcile(None, "t", [("n", "int64")], options(columns={"n": "int64"})).table
    with pytest.raises(ContractError, match="column 'n'"):
        conform(pa.table({"n": ["x"]}), table, None)
    strict = reconcile(
        None, "t", [("n", "int64")], options(columns={"n": {"type": "int64", "nullable": False}})
    ).table
    with pytest.raises(ContractError, match="nullable = false"):
        conform(pa.table({"n": pa.array([1, None], pa.int64())}), strict, None)


def test_a_widening_rewrites_a_parquet_file_to_the_new_schema() -> None:
    first = reconcile(None, "t", [("price", "int64")], options(lineage=False)).table
    written = parquet_bytes(conform(pa.table({"price": [3, 4]}), first, None), None)
    wider = reconcile(
        first, "t", [("price", "float64"), ("extra", "string")], options(lineage=False)
    )
    again = rewrite_parquet(written, wider.table, lambda t: parquet_bytes(t, None))
    result = pq.read_table(io.BytesIO(again))
    assert result.schema.equals(arrow_schema(wider.table))
    assert result.to_pydict() == {"price": [3.0, 4.0], "extra": [None, None]}
    # Already in the schema: the same bytes, not a rewrite.
    assert rewrite_parquet(again, wider.table, lambda t: b"rewritten") is again


def test_a_drive_path_that_looks_like_a_formula_is_escaped_in_csv_tables() -> None:
    from shared.transform.writers import write_arrow

    table = reconcile(None, "t", [("n", "int64")], options()).table
    rows = conform(pa.table({"n": [1]}), table, Lineage("id", "=cmd|calc.csv", None))
    sink = io.BytesIO()
    write_arrow(rows, "csv", sink)
    text = sink.getvalue().decode()
    assert "'=cmd|calc.csv" in text and ',"=cmd' not in text


def test_a_column_declared_after_the_table_was_made_is_added_whatever_the_contract() -> None:
    first = reconcile(None, "t", [("a", "int64")], options(contract="freeze")).table
    later = options(contract="freeze", columns={"b": "date"})
    outcome = reconcile(first, "t", [("a", "int64")], later)
    assert outcome.changes == [{"op": "add", "column": "b", "type": "date"}]
    assert outcome.table.column("b") is not None and outcome.table.column("b").declared
