"""A bad late batch fails the whole input (quarantined, no output); partitioned streaming."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest

from shared.errors import DrivepipeError
from shared.run.manifest import InputRecord
from shared.run.process import process_input
from shared.storage import open_storage
from tests.streaming.conftest import both_ways, make_pipeline, run_render, sales_csv


def test_malformed_row_in_a_late_batch_quarantines_and_writes_nothing(tmp_path: Path) -> None:
    data = sales_csv(400) + b"400,EU,1,2.0,2024-01-01,ok,EXTRA FIELD\n"
    dest = open_storage(str(tmp_path / "out"))
    pipeline = make_pipeline([{"op": "filter", "expr": "units > 1"}], stream=True)
    record = InputRecord(source_id="x", path="sales/big.csv")
    process_input(pipeline, dest, io.BytesIO(data), "csv", record, "20260101T000000Z-00000000")
    assert record.status == "failed"
    assert record.error and "ReadError" in record.error and "Expected 6 columns" in record.error
    assert [o.key for o in dest.list()] == [record.quarantine_key]
    assert dest.read(record.quarantine_key or "") == data  # nothing lost
    assert record.output_keys == []
    assert not list((tmp_path / "out").rglob("*.parquet"))


def test_bad_late_value_for_a_cast_quarantines_too(tmp_path: Path) -> None:
    dest = open_storage(str(tmp_path / "out"))
    pipeline = make_pipeline([{"op": "cast", "columns": {"units": "int64"}}], stream=True)
    record = InputRecord(source_id="x", path="big.csv")
    process_input(pipeline, dest, io.BytesIO(sales_csv(bad_row=390)), "csv", record, "r1")
    assert record.status == "failed"
    assert "row 390" in (record.error or "")
    assert [o.key for o in dest.list()] == [record.quarantine_key]


def test_a_good_streamed_input_is_uploaded(tmp_path: Path) -> None:
    dest = open_storage(str(tmp_path / "out"))
    pipeline = make_pipeline([{"op": "limit", "n": 10}], stream=True)
    record = InputRecord(source_id="x", path="dir/big.csv")
    process_input(pipeline, dest, io.BytesIO(sales_csv()), "csv", record, "r1")
    assert record.status == "written"
    assert record.output_keys == ["p/dir__big.parquet"]
    assert len(pd.read_parquet(io.BytesIO(dest.read("p/dir__big.parquet")))) == 10


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_partitioned_streaming_output_matches_in_memory(fmt: str) -> None:
    steps = [{"op": "normalize_columns"}, {"op": "filter", "expr": "units > 3"}]
    streamed, in_memory = both_ways(steps, sales_csv(), format=fmt, partition_by=["region_name"])
    assert sorted(streamed.outputs) == sorted(in_memory.outputs)
    assert "region_name=__HIVE_DEFAULT_PARTITION__/in." + fmt in streamed.outputs
    assert len(streamed.outputs) == 5
    for key, body in in_memory.outputs.items():
        if fmt == "parquet":
            expected = pd.read_parquet(io.BytesIO(body), dtype_backend="pyarrow")
            got = pd.read_parquet(io.BytesIO(streamed.outputs[key]), dtype_backend="pyarrow")
            pd.testing.assert_frame_equal(got, expected)
        else:
            assert streamed.outputs[key] == body


def test_too_many_partition_values_is_a_clear_error() -> None:
    pipeline = make_pipeline([], stream=True, partition_by=["id"], streaming={"max_partitions": 50})
    with pytest.raises(DrivepipeError, match=r"more than streaming\.max_partitions=50"):
        run_render(pipeline, sales_csv())


def test_missing_partition_column_is_a_clear_error() -> None:
    with pytest.raises(DrivepipeError, match="partition column\\(s\\) not in the data: nope"):
        run_render(make_pipeline([], stream=True, partition_by=["nope"]), sales_csv())


@pytest.mark.parametrize("holder", ["disk file", "rolled spool", "memory spool"])
def test_reader_never_moves_the_callers_file_position(holder: str, tmp_path: Path) -> None:
    import tempfile

    from shared.transform.streaming.batches import arrow_input

    data = sales_csv(300)
    if holder == "disk file":
        (tmp_path / "in.csv").write_bytes(data)
        handle = (tmp_path / "in.csv").open("rb")
    else:
        handle = tempfile.SpooledTemporaryFile(max_size=10 if holder == "rolled spool" else 10**9)  # noqa: SIM115
        handle.write(data)
    with handle:
        handle.seek(123)
        source = arrow_input(handle)  # type: ignore[arg-type]
        assert source.read() == data
        assert handle.tell() == 123
        source.close()


def test_failed_input_from_a_disk_file_is_quarantined_intact(tmp_path: Path) -> None:
    data = sales_csv(2000) + b"x,y\n"
    (tmp_path / "big.csv").write_bytes(data)
    dest = open_storage(str(tmp_path / "out"))
    record = InputRecord(source_id="x", path="big.csv")
    with (tmp_path / "big.csv").open("rb") as handle:
        process_input(make_pipeline([], stream=True), dest, handle, "csv", record, "r1")
    assert record.status == "failed"
    assert dest.read(record.quarantine_key or "") == data
