"""Rows longer than ``streaming.block_mb``: bigger blocks up to a limit, then a clear error.

With ``block_mb = 0.01`` (10 KB blocks) a 50 KB cell is "long" and the limit is 16 blocks
(160 KB), so every case here stays small. pyarrow reads a row that spans two blocks, so a row
fails at a block size somewhere between its length and half of it.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import shared.transform.streaming.engine as engine
from shared.errors import ReadError
from shared.run.manifest import InputRecord
from shared.run.process import process_input
from shared.storage import open_storage
from tests.streaming.conftest import both_ways, make_pipeline, run_render

TINY_BLOCKS = {"block_mb": 0.01}  # 10,000-byte blocks; rows up to 160,000 bytes stream
LONG_TEXT = 'a "quoted" word, a comma\nand a newline ' * 1400  # ~50 KB: 5 blocks
TOO_LONG = "x" * 400_000  # past two blocks of 160 KB: fails wherever it falls


def csv_with_long_cell(cell: str, at: int, rows: int = 300) -> bytes:
    """``rows`` short rows with ``cell`` (quoted) as the text of row ``at``."""
    lines = ["id,text,amount"]
    for i in range(rows):
        text = cell if i == at else f"row {i}"
        lines.append(f'{i},"{text.replace(chr(34), chr(34) * 2)}",{i * 1.5}')
    return ("\n".join(lines) + "\n").encode()


def jsonl_with_long_line(text: str, at: int, rows: int = 300) -> bytes:
    records = [{"id": i, "text": text if i == at else f"row {i}", "n": i} for i in range(rows)]
    return "".join(json.dumps(r) + "\n" for r in records).encode()


@pytest.fixture
def block_sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The block size each streaming CSV attempt parsed with, in order."""
    sizes: list[int] = []
    real = engine.csv_frames

    def spy(*args: Any, **kwargs: Any) -> Any:
        hints = args[3]
        sizes.append(hints.block_bytes or kwargs["block_bytes"])
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "csv_frames", spy)
    return sizes


@pytest.mark.parametrize("at", [0, 150, 299], ids=["first row", "middle row", "last row"])
def test_a_csv_cell_five_blocks_long_streams_like_the_whole_file(
    at: int, block_sizes: list[int]
) -> None:
    data = csv_with_long_cell(LONG_TEXT, at)
    streamed, in_memory = both_ways([], data, streaming=TINY_BLOCKS)
    frame = streamed.frame()
    pd.testing.assert_frame_equal(frame, in_memory.frame())
    assert len(frame) == 300
    assert frame["text"].iloc[at] == LONG_TEXT
    # 10 KB blocks could not hold the 50 KB row: doubled until they could, then it streamed.
    assert len(block_sizes) >= 3
    assert block_sizes == [10_000 * 2**i for i in range(len(block_sizes))]


def test_bigger_blocks_and_wider_types_restart_together(block_sizes: list[int]) -> None:
    data = csv_with_long_cell(LONG_TEXT, 150).replace(b"\n299,", b"\n299.5,")
    streamed, in_memory = both_ways([], data, streaming=TINY_BLOCKS)
    pd.testing.assert_frame_equal(streamed.frame(), in_memory.frame())
    assert str(streamed.frame()["id"].dtype.pyarrow_dtype) == "double"
    # Bigger-block restarts, then a type restart that keeps the bigger blocks.
    *growing, kept = block_sizes
    assert len(growing) >= 3 and growing == [10_000 * 2**i for i in range(len(growing))]
    assert kept == growing[-1]


def test_a_csv_row_past_the_limit_fails_clearly_and_is_quarantined(tmp_path: Path) -> None:
    data = csv_with_long_cell(TOO_LONG, 150)
    dest = open_storage(str(tmp_path / "out"))
    pipeline = make_pipeline([], stream=True, streaming=TINY_BLOCKS)
    record = InputRecord(source_id="x", path="dir/long.csv")
    process_input(pipeline, dest, io.BytesIO(data), "csv", record, "r1")
    assert record.status == "failed"
    error = record.error or ""
    assert "ReadError" in error and "longer than 0.16 MB" in error
    assert "raise streaming.block_mb" in error and "straddl" not in error
    assert [o.key for o in dest.list()] == [record.quarantine_key]
    assert dest.read(record.quarantine_key or "") == data  # nothing lost
    assert record.output_keys == []
    assert not list((tmp_path / "out").rglob("*.parquet"))


def test_raising_block_mb_lets_that_row_stream() -> None:
    data = csv_with_long_cell(TOO_LONG, 150)
    streamed, in_memory = both_ways([], data, streaming={"block_mb": 0.03})  # rows to 480 KB
    pd.testing.assert_frame_equal(streamed.frame(), in_memory.frame())


@pytest.mark.parametrize(
    ("length", "block_mb"),
    [(50_000, 0.01), (2_500_000, 0.2)],
    ids=["five of our blocks", "past pyarrow's 1 MiB JSON block"],
)
def test_a_long_jsonl_line_streams_like_the_whole_file(length: int, block_mb: float) -> None:
    data = jsonl_with_long_line("y" * length, 150)
    streamed, in_memory = both_ways([], data, "jsonl", streaming={"block_mb": block_mb})
    frame = streamed.frame()
    pd.testing.assert_frame_equal(frame, in_memory.frame())
    assert len(frame) == 300 and len(frame["text"].iloc[150]) == length


def test_a_jsonl_line_past_the_limit_is_a_clear_error() -> None:
    data = jsonl_with_long_line("y" * 200_000, 150)
    pipeline = make_pipeline([], stream=True, streaming=TINY_BLOCKS)
    with pytest.raises(ReadError, match=r"line 151 is longer than 0\.16 MB.*streaming\.block_mb"):
        run_render(pipeline, data, "jsonl", "in.jsonl")
