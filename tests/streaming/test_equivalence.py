"""Streamed results equal the in-memory path's, step by step and for every output format."""

from __future__ import annotations

import gzip
from typing import Any

import pandas as pd
import pytest

from shared.errors import TransformError
from tests.streaming.conftest import both_ways, make_pipeline, run_render, sales_csv

ROW_STEPS: dict[str, list[dict[str, Any]]] = {
    "select": [{"op": "select", "columns": ["units", "id"]}],
    "drop": [{"op": "drop", "columns": ["note", "day"]}],
    "rename": [{"op": "rename", "columns": {"Region Name": "region"}}],
    "normalize_columns": [{"op": "normalize_columns"}],
    "cast": [
        {
            "op": "cast",
            "columns": {"units": "float64", "day": "date", "id": "string", "unit_price": "int64"},
            "errors": "null",
        }
    ],
    "filter": [{"op": "filter", "expr": "units >= 5 and unit_price < 60"}],
    "replace_values": [{"op": "replace", "column": "Region Name", "values": {"EU": "Europe"}}],
    "replace_pattern": [
        {"op": "replace", "column": "note", "pattern": "[aeiou]", "replacement": "*"}
    ],
    "fillna": [{"op": "fillna", "values": {"units": 0, "Region Name": "unknown"}}],
    "dropna": [{"op": "dropna", "subset": ["units", "Region Name"], "how": "any"}],
    "derive": [{"op": "derive", "column": "revenue", "expr": "units * unit_price"}],
    "limit": [{"op": "limit", "n": 23}],
    "chain": [
        {"op": "normalize_columns"},
        {"op": "filter", "expr": "units > 2"},
        {"op": "limit", "n": 150},
        {"op": "derive", "column": "revenue", "expr": "units * unit_price"},
        {"op": "limit", "n": 40},
        {"op": "cast", "columns": {"revenue": "decimal(12,2)"}},
    ],
}


@pytest.mark.parametrize("name", sorted(ROW_STEPS))
def test_each_row_wise_step_streams_to_the_in_memory_result(name: str, sales: bytes) -> None:
    streamed, in_memory = both_ways(ROW_STEPS[name], sales)
    pd.testing.assert_frame_equal(streamed.frame(), in_memory.frame())
    assert streamed.record.steps == in_memory.record.steps
    assert (streamed.record.rows_in, streamed.record.rows_out) == (
        in_memory.record.rows_in,
        in_memory.record.rows_out,
    )


@pytest.mark.parametrize(
    ("fmt", "compression"),
    [("csv", None), ("csv", "gzip"), ("jsonl", None), ("jsonl", "gzip"), ("parquet", "snappy")],
)
def test_every_output_format_matches_byte_for_byte_or_by_content(
    sales: bytes, fmt: str, compression: str | None
) -> None:
    steps = ROW_STEPS["chain"][:4]
    streamed, in_memory = both_ways(steps, sales, format=fmt, compression=compression)
    [(key, body)] = streamed.outputs.items()
    [(memory_key, memory_body)] = in_memory.outputs.items()
    assert key == memory_key
    if fmt == "parquet":
        pd.testing.assert_frame_equal(streamed.frame(), in_memory.frame())
        return
    if compression == "gzip":
        body, memory_body = gzip.decompress(body), gzip.decompress(memory_body)
    assert body == memory_body  # one header, same escaping of "=1+1", same numbers
    assert body.count(b"\n") > 100


def test_parquet_row_groups_never_exceed_batch_rows(sales: bytes) -> None:
    import io

    import pyarrow.parquet as pq

    streamed = run_render(make_pipeline([], stream=True), sales)
    [body] = streamed.outputs.values()
    metadata = pq.ParquetFile(io.BytesIO(body)).metadata
    groups = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
    assert metadata.num_row_groups > 10
    assert max(groups) <= 7
    assert sum(groups) == 400


def test_cast_error_in_a_late_batch_names_the_same_row_as_in_memory() -> None:
    data = sales_csv(bad_row=377)
    steps = [{"op": "cast", "columns": {"units": "int64"}}]
    with pytest.raises(TransformError) as streamed:
        run_render(make_pipeline(steps, stream=True), data)
    with pytest.raises(TransformError) as in_memory:
        run_render(make_pipeline(steps, stream=False), data)
    assert "row 377" in str(streamed.value)
    assert str(streamed.value) == str(in_memory.value)


def test_filter_and_derive_errors_match(sales: bytes) -> None:
    steps = [{"op": "derive", "column": "x", "expr": "no_such_column * 2"}]
    with pytest.raises(TransformError, match="step 0 \\(derive\\)"):
        run_render(make_pipeline(steps, stream=True), sales)


def test_header_only_file_gives_the_same_empty_output() -> None:
    streamed, in_memory = both_ways([{"op": "filter", "expr": "a > 1"}], b"a,b\n")
    pd.testing.assert_frame_equal(streamed.frame(), in_memory.frame())
    assert len(streamed.frame()) == 0


def test_small_inputs_below_the_threshold_do_not_stream(
    sales: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shared.transform.streaming.engine as engine

    calls: list[str] = []
    real = engine.stream_render
    monkeypatch.setattr(
        engine, "stream_render", lambda *a, **k: calls.append("stream") or real(*a, **k)
    )
    run_render(make_pipeline([], stream=False), sales)
    assert calls == []
    run_render(make_pipeline([], stream=True), sales)
    assert calls == ["stream"]


def test_tsv_and_numpy_backend_stream_too() -> None:
    data = sales_csv(60).replace(b",", b"\t")
    read = {"csv": {"dtype_backend": "numpy"}}
    streamed = run_render(make_pipeline([], stream=True, read=read), data, "tsv", "in.tsv")
    in_memory = run_render(make_pipeline([], stream=False, read=read), data, "tsv", "in.tsv")
    pd.testing.assert_frame_equal(streamed.frame(), in_memory.frame())
    assert list(streamed.frame().columns)[:2] == ["id", "Region Name"]
