"""Output formats: roundtrips with values and dtypes, gzip, formula escaping, partitions."""

from __future__ import annotations

import datetime
import decimal
import gzip
import io
import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shared.errors import TransformError
from shared.transform.readers import read_table
from shared.transform.writers import (
    HIVE_NULL,
    extension,
    hive_escape,
    split_partitions,
    write_table,
)
from tests.transforms.helpers import records


@pytest.fixture
def typed() -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "id": pd.array([1, 2, None], dtype="int64[pyarrow]"),
            "price": pd.array([1.5, None, -2.25], dtype="double[pyarrow]"),
            "name": pd.array(["Zoë", "=SUM(A1)", None], dtype="string[pyarrow]"),
            "day": pd.array(
                [datetime.date(2024, 1, 5), None, datetime.date(2024, 12, 31)],
                dtype=pd.ArrowDtype(pa.date32()),
            ),
            "at": pd.to_datetime(["2024-01-05 10:30:00", "2024-02-01 00:00:00", None]),
            "flag": pd.array([True, False, None], dtype="bool[pyarrow]"),
            "amount": pd.array(
                [decimal.Decimal("1.10"), None, decimal.Decimal("-3.00")],
                dtype=pd.ArrowDtype(pa.decimal128(10, 2)),
            ),
        },
        index=[10, 11, 12],  # never written
    )
    return frame


def write(df: pd.DataFrame, fmt: str, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    size = write_table(df, fmt, buffer, **kwargs)
    assert size == len(buffer.getvalue()) > 0
    return buffer.getvalue()


@pytest.mark.parametrize("compression", [None, "snappy", "none"])
def test_parquet_roundtrip_keeps_values_and_types(typed: pd.DataFrame, compression: str) -> None:
    data = write(typed, "parquet", compression=compression)
    table = pq.read_table(io.BytesIO(data))
    assert table.column_names == list(typed.columns)  # no index column
    metadata = pq.ParquetFile(io.BytesIO(data)).metadata
    expected_codec = {None: "SNAPPY", "snappy": "SNAPPY", "none": "UNCOMPRESSED"}[compression]
    assert metadata.row_group(0).column(0).compression == expected_codec
    assert table.schema.field("id").type == pa.int64()
    assert table.schema.field("day").type == pa.date32()
    assert table.schema.field("amount").type == pa.decimal128(10, 2)
    assert pa.types.is_timestamp(table.schema.field("at").type)
    back = read_table(data, "parquet")[0].frame
    assert records(back) == records(typed.reset_index(drop=True))


def test_csv_roundtrip_and_formula_escaping(typed: pd.DataFrame) -> None:
    data = write(typed, "csv")
    text = data.decode("utf-8")
    header, first, second, third = text.splitlines()
    assert header == '"id","price","name","day","at","flag","amount"'
    assert first.startswith('1,1.5,"Zoë",2024-01-05,2024-01-05 10:30:00')
    assert '"\'=SUM(A1)"' in second  # escaped
    assert third.startswith(",-2.25,,2024-12-31")  # negative number untouched
    back = read_table(data, "csv")[0].frame
    assert back["id"].tolist()[:2] == [1, 2]
    assert back["name"].tolist()[:2] == ["Zoë", "'=SUM(A1)"]
    assert back["day"].tolist()[2] == datetime.date(2024, 12, 31)


def test_csv_formula_escaping_rules() -> None:
    df = pd.DataFrame(
        {
            "text": ["=1+2", "+cmd", "-x", "@SUM", "\tTab", "\rCR", "safe", "a=b", None],
            "num": [-1, 2, -3, 4, -5, 6, 7, 8, 9],
        }
    ).convert_dtypes(dtype_backend="pyarrow")
    back = pd.read_csv(io.BytesIO(write(df, "csv")), keep_default_na=False)
    assert back["text"].tolist() == [
        "'=1+2",
        "'+cmd",
        "'-x",
        "'@SUM",
        "'\tTab",
        "'\rCR",
        "safe",
        "a=b",
        "",
    ]
    assert back["num"].tolist() == [-1, 2, -3, 4, -5, 6, 7, 8, 9]
    raw = pd.read_csv(io.BytesIO(write(df, "csv", escape_formulas=False)), keep_default_na=False)
    assert raw["text"].tolist()[0] == "=1+2"


def test_csv_and_jsonl_gzip(typed: pd.DataFrame) -> None:
    for fmt in ("csv", "jsonl"):
        zipped = write(typed, fmt, compression="gzip")
        assert zipped[:2] == b"\x1f\x8b"
        assert gzip.decompress(zipped) == write(typed, fmt)


def test_jsonl_values_and_iso_dates(typed: pd.DataFrame) -> None:
    lines = write(typed, "jsonl").decode("utf-8").splitlines()
    rows = [json.loads(line) for line in lines]
    assert len(rows) == 3
    assert rows[0]["id"] == 1 and rows[0]["name"] == "Zoë" and rows[0]["flag"] is True
    assert rows[0]["day"].startswith("2024-01-05")
    assert rows[0]["at"].startswith("2024-01-05T10:30:00")
    assert rows[1]["name"] == "=SUM(A1)"  # only CSV is escaped
    assert rows[2]["id"] is None and rows[2]["price"] == -2.25
    back = read_table(write(typed, "jsonl"), "jsonl")[0].frame
    assert back["id"].tolist()[:2] == [1, 2]


def test_jsonl_chunks_and_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shared.transform.writers.JSONL_CHUNK_ROWS", 2)
    df = pd.DataFrame({"n": range(5)})
    lines = write(df, "jsonl").decode().splitlines()
    assert [json.loads(line)["n"] for line in lines] == [0, 1, 2, 3, 4]
    buffer = io.BytesIO()
    assert write_table(df.iloc[:0], "jsonl", buffer) == 0


def test_write_rejects_unknown_format_and_compression(typed: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="unknown output format 'xlsx'"):
        write_table(typed, "xlsx", io.BytesIO())
    with pytest.raises(ValueError, match="'zstd' is not available for csv"):
        write_table(typed, "csv", io.BytesIO(), compression="zstd")


def test_mixed_type_column_is_a_clear_error() -> None:
    df = pd.DataFrame({"ok": [1, 2], "mixed": [1, "two"]})
    for fmt in ("parquet", "csv"):
        with pytest.raises(TransformError, match="column 'mixed' cannot be written"):
            write_table(df, fmt, io.BytesIO())


def test_extension() -> None:
    assert extension("parquet", None) == ".parquet"
    assert extension("parquet", "snappy") == ".parquet"
    assert extension("csv", None) == ".csv"
    assert extension("csv", "gzip") == ".csv.gz"
    assert extension("jsonl", "gzip") == ".jsonl.gz"


def test_split_partitions_values_and_escaping() -> None:
    df = pd.DataFrame(
        {
            "region": ["EU", "US", "EU", None, "a/b:c", "EU"],
            "year": [2024, 2024, 2023, 2024, 2024, 2024],
            "amount": [1, 2, 3, 4, 5, 6],
        }
    ).convert_dtypes(dtype_backend="pyarrow")
    parts = list(split_partitions(df, ["region", "year"]))
    labels = [label for label, _ in parts]
    assert labels == [
        [("region", "EU"), ("year", "2023")],
        [("region", "EU"), ("year", "2024")],
        [("region", "US"), ("year", "2024")],
        [("region", "a%2Fb%3Ac"), ("year", "2024")],
        [("region", HIVE_NULL), ("year", "2024")],
    ]
    by_label = {tuple(label): part for label, part in parts}
    eu_2024 = by_label[(("region", "EU"), ("year", "2024"))]
    assert list(eu_2024.columns) == ["amount"]
    assert eu_2024["amount"].tolist() == [1, 6]
    assert list(eu_2024.index) == [0, 1]
    assert sum(len(part) for _, part in parts) == len(df)


def test_hive_escape_and_partition_types() -> None:
    assert hive_escape("50% off #1 = 'x'?") == "50%25 off %231 %3D %27x%27%3F"
    df = pd.DataFrame(
        {
            "day": pd.to_datetime(["2024-01-05", "2024-01-05"]),
            "ok": [True, False],
            "v": [1, 2],
        }
    )
    labels = [label for label, _ in split_partitions(df, ["day", "ok"])]
    assert labels == [
        [("day", "2024-01-05T00%3A00%3A00"), ("ok", "false")],
        [("day", "2024-01-05T00%3A00%3A00"), ("ok", "true")],
    ]
    with pytest.raises(ValueError, match="unknown partition column"):
        list(split_partitions(df, ["nope"]))
