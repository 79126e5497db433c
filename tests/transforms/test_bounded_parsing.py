"""Bounded parsing: JSON depth, non-finite numbers and the column limit, whole-file and streamed."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.errors import ReadError
from shared.transform.readers import ReadOptions, read_table
from shared.transform.readers.limits import check_json_depth, csv_width
from shared.transform.readers.options import CsvOptions, JsonOptions
from tests.streaming.conftest import make_pipeline, run_render

DEEP_ARRAY = b"[" * 400_000
DEEP_OBJECT = b'{"a":' * 5_000 + b"1" + b"}" * 5_000
DEEP_LINES = b'{"id":1}\n{"id":2,"a":' + b"[" * 3_000 + b"]" * 3_000 + b"}\n"


def _read(data: bytes, fmt: str, **read: Any) -> Any:
    return read_table(data, fmt, ReadOptions.model_validate(read))[0].frame


def _streamed(data: bytes, fmt: str = "jsonl", **read: Any) -> Any:
    return run_render(make_pipeline(stream=True, read=read or None), data, fmt, f"in.{fmt}")


# --- depth -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "fmt"), [(DEEP_ARRAY, "json"), (DEEP_OBJECT, "json"), (DEEP_LINES, "jsonl")]
)
def test_deep_json_is_refused_before_parsing(data: bytes, fmt: str) -> None:
    with pytest.raises(ReadError, match="nested deeper than 64 levels"):
        _read(data, fmt)


def test_deep_json_lines_are_refused_when_streamed_too() -> None:
    with pytest.raises(ReadError, match="nested deeper than 64 levels"):
        _streamed(DEEP_LINES)
    late = b'{"id":1,"a":[1]}\n' * 2_000 + DEEP_LINES  # in a later block than the first
    with pytest.raises(ReadError, match="nested deeper than 64 levels"):
        _streamed(late)


def test_the_depth_limit_is_configurable_and_counts_every_level() -> None:
    records = b'[{"a":' + b"[" * 62 + b"1" + b"]" * 62 + b"}]"  # 64 levels in all
    assert len(_read(records, "json")) == 1
    with pytest.raises(ReadError, match="deeper than 63 levels"):
        _read(records, "json", json={"max_depth": 63})
    deeper = b'[{"a":' + b"[" * 98 + b"1" + b"]" * 98 + b"}]"
    assert len(_read(deeper, "json", json={"max_depth": 100})) == 1


@pytest.mark.parametrize(
    "text",
    [
        '"' + "[" * 500 + '"',  # brackets inside a string
        '"a\\"' + "{" * 500 + '"',  # ... after an escaped quote
        '"\\\\\\"' + "[" * 500 + '"',  # ... after an escaped backslash then an escaped quote
    ],
)
def test_brackets_inside_strings_do_not_count(text: str) -> None:
    body = f'[{{"note": {text}}}]'.encode()
    json.loads(body)  # the cases are valid JSON
    check_json_depth(body, 2)


def test_an_escaped_backslash_before_a_quote_ends_the_string() -> None:
    body = b'["a\\\\", ' + b"[" * 10 + b"]" * 10 + b"]"
    with pytest.raises(ReadError, match="deeper than 5"):
        check_json_depth(body, 5)


def test_depth_is_carried_across_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.transform.readers import limits

    monkeypatch.setattr(limits, "DEPTH_CHUNK_BYTES", 7)
    check_json_depth(b'["a\\"' + b"[" * 100 + b'", "\\\\\\\\"]', 2)
    with pytest.raises(ReadError):
        check_json_depth(b'[{"a":' + b"[" * 10 + b"]" * 10 + b"}]", 11)
    check_json_depth(b'[{"a":' + b"[" * 10 + b"]" * 10 + b"}]", 12)


# --- non-finite numbers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "fmt"),
    [
        (b'[{"id":1,"amount":1e999999}]', "json"),
        (b'[{"id":1,"amount":-1e999}]', "json"),
        (b'[{"id":1,"amount":{"nested":[1, 1e999]}}]', "json"),
        (b'[{"id":1,"amount":NaN}]', "json"),
        (b'[{"id":1,"amount":Infinity}]', "json"),
        (b'{"id":1,"amount":1e999999}\n', "jsonl"),
        (b'{"id":1,"amount":' + b"1" * 400 + b".5}\n", "jsonl"),  # too big for a float
        (b'{"id":1}\n{"id":2,"amount":NaN}\n', "jsonl"),  # pyarrow would take NaN
        (b'{"id":1,"s":{"x":1e999}}\n', "jsonl"),
    ],
)
def test_non_finite_numbers_fail_the_input(data: bytes, fmt: str) -> None:
    with pytest.raises(ReadError, match="non-finite number"):
        _read(data, fmt)


def test_non_finite_numbers_fail_when_streamed_too() -> None:
    data = b'{"id":1,"amount":2.5}\n' * 1_000 + b'{"id":2,"amount":1e999999}\n'
    with pytest.raises(ReadError, match="non-finite number"):
        _streamed(data)


def test_non_finite_numbers_can_be_allowed() -> None:
    frame = _read(b'[{"a":1e999},{"a":NaN}]', "json", json={"allow_non_finite": True})
    assert frame["a"].iloc[0] == float("inf")


def test_ordinary_floats_missing_keys_and_huge_integers_are_not_non_finite() -> None:
    frame = _read(b'[{"a":1.5e308,"b":"inf"},{"c":1e-999}]', "json")
    assert frame.shape == (2, 3)
    lines = _read(b'{"a":1.5,"n":null}\n{"a":2}\n', "jsonl")
    assert len(lines) == 2


# --- the column limit ------------------------------------------------------------------------


def _wide_csv(columns: int, rows: int = 3) -> bytes:
    header = ",".join(f"c{i}" for i in range(columns))
    return (header + "\n" + ("1," * (columns - 1) + "1\n") * rows).encode()


def test_a_wide_csv_is_refused_naming_its_width_and_the_limit() -> None:
    with pytest.raises(ReadError, match="header row has 100,000 columns, over the limit of 10,000"):
        _read(_wide_csv(100_000), "csv")


def test_a_wide_csv_is_refused_when_streamed_too() -> None:
    pipeline = make_pipeline(stream=True, read={"max_columns": 50})
    with pytest.raises(ReadError, match="has 51 columns, over the limit of 50"):
        run_render(pipeline, _wide_csv(51))
    assert len(run_render(make_pipeline(stream=True), _wide_csv(50)).frame().columns) == 50


def test_the_column_limit_is_configurable_and_exact() -> None:
    assert _read(_wide_csv(20), "csv", max_columns=20).shape == (3, 20)
    with pytest.raises(ReadError, match="has 21 columns, over the limit of 20"):
        _read(_wide_csv(21), "csv", max_columns=20)
    with pytest.raises(ReadError, match="first CSV row has 21"):
        _read(_wide_csv(21), "csv", max_columns=20, csv={"header": None})
    tsv = _wide_csv(30).replace(b",", b"\t")
    with pytest.raises(ReadError, match="30 columns"):
        _read(tsv, "tsv", max_columns=20)


def test_the_width_counts_the_header_after_skipped_rows_and_honours_quotes() -> None:
    data = b'title line\n"a,b","c\nd",e\n1,2,3\n'
    frame = _read(data, "csv", max_columns=3, csv=CsvOptions(skip_rows=1).model_dump())
    assert list(frame.columns) == ["a,b", "c\nd", "e"]
    assert csv_width(['x,"1,2', '",3\n'], ",", '"', 0, 10) == (3, True)
    assert csv_width(["\n\n", "a,b", ",c"], ",", '"', 0, 10) == (3, True)


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_wide_json_records_are_refused(fmt: str) -> None:
    record = "{" + ",".join(f'"k{i}":1' for i in range(200)) + "}"
    data = (f"[{record}]" if fmt == "json" else record + "\n").encode()
    with pytest.raises(ReadError, match="200 columns, over the limit of 100"):
        _read(data, fmt, max_columns=100)


def test_json_keys_spread_over_records_count_too() -> None:
    data = json.dumps([{f"k{i}": 1} for i in range(150)]).encode()
    with pytest.raises(ReadError, match="over the limit of 100"):
        _read(data, "json", max_columns=100)
    lines = "".join(json.dumps({f"k{i}": 1}) + "\n" for i in range(150)).encode()
    with pytest.raises(ReadError, match="over the limit of 100"):
        _read(lines, "jsonl", max_columns=100)


def test_wide_json_lines_are_refused_when_streamed() -> None:
    record = "{" + ",".join(f'"k{i}":1' for i in range(200)) + "}\n"
    with pytest.raises(ReadError, match="200 columns, over the limit of 100"):
        _streamed(record.encode(), max_columns=100)


def test_limits_have_sane_defaults_and_are_validated() -> None:
    options = ReadOptions()
    assert options.max_columns == 10_000
    assert options.json.max_depth == 64 and options.json.allow_non_finite is False
    with pytest.raises(ValueError):
        ReadOptions(max_columns=0)
    with pytest.raises(ValueError):
        JsonOptions(max_depth=100_000)
