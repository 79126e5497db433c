"""Schema drift across batches and text encodings: streamed input reads like the whole file."""

from __future__ import annotations

import io

import pandas as pd
import pyarrow.csv as pacsv
import pytest

from shared.errors import ReadError
from tests.streaming.conftest import BLOCK_MB, both_ways, make_pipeline, run_render

ROWS = 600  # ~6 KB of "n,value" lines: the drifting value sits well past the first 4 KB block


def drifting_csv(late_value: str, *, early: str = "{i}") -> bytes:
    lines = ["n,value,label"]
    for i in range(ROWS):
        value = late_value if i == ROWS - 3 else early.format(i=i)
        lines.append(f"{i},{value},row{i}")
    return ("\n".join(lines) + "\n").encode()


def first_block_type(data: bytes, column: str) -> str:
    """The type pyarrow's streaming reader fixes for ``column`` from the first block alone."""
    options = pacsv.ReadOptions(block_size=int(BLOCK_MB * 1_000_000))
    return str(pacsv.open_csv(io.BytesIO(data), read_options=options).schema.field(column).type)


@pytest.mark.parametrize(
    ("late", "early", "head_type", "final_type"),
    [
        ("1.5", "{i}", "int64", "double"),  # ints, then a float: float64, like the whole file
        ("n/a?", "{i}", "int64", "string"),  # ints, then text: string
        ("42", "", "null", "int64"),  # empty in the head, a number late: int64
        ("late text", "", "null", "string"),  # empty in the head, text late: string
        ("2024-13-99", "2024-01-0{i:.1}", "date32[day]", "string"),  # dates, then garbage
    ],
)
def test_a_late_value_widens_the_column_exactly_as_the_whole_file_reader_does(
    late: str, early: str, head_type: str, final_type: str
) -> None:
    early = early.replace("{i:.1}", "1")
    data = drifting_csv(late, early=early)
    assert first_block_type(data, "value") == head_type  # the drift really is past block 1
    streamed, in_memory = both_ways([], data)
    frame = streamed.frame()
    pd.testing.assert_frame_equal(frame, in_memory.frame())
    assert str(frame["value"].dtype.pyarrow_dtype) == final_type
    assert len(frame) == ROWS


def test_two_columns_drifting_at_different_places_both_widen() -> None:
    lines = ["a,b"] + [f"{i},{i}" for i in range(ROWS)]
    lines[400] = "x,1"
    lines[550] = "5,0.25"
    data = ("\n".join(lines) + "\n").encode()
    streamed, in_memory = both_ways([{"op": "derive", "column": "c", "expr": "b * 2"}], data)
    pd.testing.assert_frame_equal(streamed.frame(), in_memory.frame())
    assert streamed.frame()["c"].iloc[549] == 0.5


def test_latin1_semicolon_file_streams_like_the_whole_file() -> None:
    lines = ["ville;région;ventes"] + [f"Orléans;Île-de-France;{i},5" for i in range(300)]
    data = ("\n".join(lines) + "\n").encode("latin-1")
    streamed, in_memory = both_ways([{"op": "normalize_columns"}], data)
    frame = streamed.frame()
    pd.testing.assert_frame_equal(frame, in_memory.frame())
    assert list(frame.columns) == ["ville", "region", "ventes"]
    assert frame["region"].iloc[-1] == "Île-de-France"


def test_ascii_head_with_latin1_bytes_in_a_late_block_is_reread_as_cp1252() -> None:
    lines = ["city;amount"] + [f"Paris;{i}" for i in range(8000)] + ["Besançon;1", "Zürich;2"]
    data = ("\n".join(lines) + "\n").encode("cp1252")
    assert data[:65536].isascii()  # the sniffed sample says UTF-8
    streamed, in_memory = both_ways([], data, streaming={"batch_rows": 500, "block_mb": 0.02})
    pd.testing.assert_frame_equal(streamed.frame(), in_memory.frame())
    assert streamed.frame()["city"].iloc[-2:].tolist() == ["Besançon", "Zürich"]


def test_utf16_with_bom_streams() -> None:
    lines = ["name,qty"] + [f"naïve {i},{i}" for i in range(300)]
    data = ("\n".join(lines) + "\n").encode("utf-16")
    streamed, in_memory = both_ways([], data)
    pd.testing.assert_frame_equal(streamed.frame(), in_memory.frame())


def test_declared_encoding_that_does_not_fit_is_a_read_error() -> None:
    data = ("a,b\n" + "é,1\n" * 10).encode("latin-1")
    pipeline = make_pipeline([], stream=True, read={"csv": {"encoding": "utf-8"}})
    with pytest.raises(ReadError, match="not valid"):
        run_render(pipeline, data)


def test_quoted_newlines_across_blocks() -> None:
    lines = ["id,text"] + [f'{i},"line one\nline two, {i}"' for i in range(300)]
    data = ("\n".join(lines) + "\n").encode()
    streamed, in_memory = both_ways([], data)
    pd.testing.assert_frame_equal(streamed.frame(), in_memory.frame())
    assert streamed.frame()["text"].iloc[299] == "line one\nline two, 299"


def test_cp1252_head_with_a_byte_cp1252_lacks_later_reads_as_latin1_both_ways() -> None:
    data = ("a;b\n" + "é;1\n" * 20000).encode("cp1252") + b"\x81;2\n"
    assert len(data) > 65536  # the sniffed sample says cp1252
    streamed, in_memory = both_ways([], data, streaming={"batch_rows": 5000, "block_mb": 0.02})
    pd.testing.assert_frame_equal(streamed.frame(), in_memory.frame())
    assert streamed.frame()["a"].iloc[-1] == "\x81"


@pytest.mark.parametrize(("infer_mb", "restarts"), [(0, 1), (0.1, 0)])
def test_types_inferred_from_a_bigger_head_avoid_the_restart(
    infer_mb: float, restarts: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shared.transform.streaming.csv_source as csv_source

    drifts: list[str] = []
    real = csv_source._csv_problem

    def counting(*args: object) -> Exception:
        problem = real(*args)  # type: ignore[arg-type]
        if isinstance(problem, csv_source.SchemaDrift):
            drifts.append(str(problem))
        return problem

    monkeypatch.setattr(csv_source, "_csv_problem", counting)
    data = drifting_csv("1.5")  # ~6 KB: past the first 4 KB block, inside a 100 KB head
    pipeline = make_pipeline([], stream=True, streaming={"infer_mb": infer_mb})
    frame = run_render(pipeline, data).frame()
    assert len(drifts) == restarts
    assert str(frame["value"].dtype.pyarrow_dtype) == "double"
    assert len(frame) == ROWS
