"""Readers: sniffing, encodings, bad input, xlsx sheets and zip-bomb guard, JSON, Parquet."""

from __future__ import annotations

import datetime
import io
import json
import zipfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shared.errors import ReadError
from shared.transform.readers import (
    CsvOptions,
    ExcelOptions,
    JsonOptions,
    ReadOptions,
    Table,
    detect_format,
    read_table,
)
from shared.transform.readers.sniff import sniff_delimiter, sniff_encoding
from tests.transforms.helpers import records


def read_one(data: bytes, fmt: str = "csv", **csv_options: object) -> pd.DataFrame:
    tables = read_table(data, fmt, ReadOptions(csv=CsvOptions(**csv_options)))
    assert len(tables) == 1 and tables[0].name is None
    return tables[0].frame


# --- CSV: sniffing -------------------------------------------------------------------------


def test_semicolon_latin1_with_accents() -> None:
    text = "nom;ville;montant\nJosé;Zürich;12\nAnaïs;Besançon;7\nÉmile;Köln;\n"
    frame = read_one(text.encode("latin-1"))
    assert list(frame.columns) == ["nom", "ville", "montant"]
    assert records(frame) == [
        {"nom": "José", "ville": "Zürich", "montant": 12},
        {"nom": "Anaïs", "ville": "Besançon", "montant": 7},
        {"nom": "Émile", "ville": "Köln", "montant": None},
    ]


def test_latin1_beyond_the_sniff_sample_falls_back() -> None:
    head = "id,name\n" + "".join(f"{i},plain\n" for i in range(20_000))  # > 64 KiB of ASCII
    data = head.encode() + "20000,Müller\n".encode("cp1252")
    frame = read_one(data)
    assert frame["name"].iloc[-1] == "Müller"
    assert len(frame) == 20_001


def test_utf8_bom_is_stripped() -> None:
    frame = read_one("\ufeffcity,n\nMünchen,1\n".encode())
    assert list(frame.columns) == ["city", "n"]
    assert frame["city"].tolist() == ["München"]


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-be"])
def test_utf16_with_bom_and_tabs(codec: str) -> None:
    text = "name\tprice\nÇa\t1.5\nß\t2\n"
    data = (b"\xfe\xff" if codec == "utf-16-be" else b"") + text.encode(codec)
    frame = read_one(data)
    assert records(frame) == [{"name": "Ça", "price": 1.5}, {"name": "ß", "price": 2.0}]


def test_pipe_and_tab_and_tsv() -> None:
    assert records(read_one(b"a|b|c\n1|x|2\n")) == [{"a": 1, "b": "x", "c": 2}]
    assert records(read_one(b"a\tb\n1,5\t2\n")) == [{"a": "1,5", "b": 2}]
    tsv = read_table(b"one col, with comma\tb\nx\t1\n", "tsv")[0].frame
    assert list(tsv.columns) == ["one col, with comma", "b"]


def test_sniff_honours_quotes() -> None:
    text = 'name,comment\n"Smith; John","a; b; c"\n"Doe; Jane","x"\n'
    assert sniff_delimiter(text) == ","
    frame = read_one(text.encode())
    assert frame["name"].tolist() == ["Smith; John", "Doe; Jane"]


def test_sniff_prefers_consistent_counts() -> None:
    text = "a;b;c\n1,5;2,5;3\n4;5,0;6\n"  # commas inconsistent, semicolons always 3 fields
    assert sniff_delimiter(text, complete=True) == ";"
    assert sniff_delimiter("just one column\nvalue\n") == ","


def test_sniff_encoding_order() -> None:
    assert sniff_encoding(b"\xef\xbb\xbfa,b") == "utf-8-sig"
    assert sniff_encoding("a,b\n".encode("utf-16")) == "utf-16"
    assert sniff_encoding("é,ü".encode()) == "utf-8"
    assert sniff_encoding("é,ü".encode()[:-1]) == "utf-8"  # character cut off by the sample
    assert sniff_encoding("€,é".encode("cp1252")) == "cp1252"
    assert sniff_encoding(b"\x81\xe9") == "latin-1"  # 0x81 is undefined in cp1252


def test_explicit_options_override_sniffing() -> None:
    data = "x;y\n1;2\n".encode("cp1252")
    frame = read_one(data, delimiter=",", encoding="cp1252")
    assert list(frame.columns) == ["x;y"]
    skipped = read_one(b"# exported\n# by tool\na,b\n1,2\n", skip_rows=2)
    assert records(skipped) == [{"a": 1, "b": 2}]
    no_header = read_one(b"1,2\n3,4\n", header=None)
    assert records(no_header) == [{"column_1": 1, "column_2": 2}, {"column_1": 3, "column_2": 4}]
    nulls = read_one(b"a,b\n1,-\n2,x\n", na_values=["-"])
    assert records(nulls) == [{"a": 1, "b": None}, {"a": 2, "b": "x"}]


def test_numpy_backend() -> None:
    frame = read_one(b"a,d,s\n1,2024-01-05,x\n2,2024-01-06,y\n", dtype_backend="numpy")
    assert str(frame["a"].dtype) == "int64"
    assert str(frame["d"].dtype).startswith("datetime64")
    assert frame["s"].tolist() == ["x", "y"]


def test_pyarrow_backend_types() -> None:
    frame = read_one(b"a,d,f,s\n1,2024-01-05,1.5,x\n,2024-01-06,,\n")
    assert [str(t) for t in frame.dtypes] == [
        "int64[pyarrow]",
        "date32[day][pyarrow]",
        "double[pyarrow]",
        "string[pyarrow]",
    ]
    assert frame["d"].tolist() == [datetime.date(2024, 1, 5), datetime.date(2024, 1, 6)]
    assert records(frame)[1] == {"a": None, "d": datetime.date(2024, 1, 6), "f": None, "s": None}


# --- CSV: structure and bad input ----------------------------------------------------------


def test_quoted_newlines_parse() -> None:
    data = b'id,note,n\n1,"line one\nline two",3\n2,"say ""hi""",4\n'
    frame = read_one(data)
    assert frame["note"].tolist() == ["line one\nline two", 'say "hi"']
    assert frame["n"].tolist() == [3, 4]


def test_quoted_newlines_across_parser_blocks() -> None:
    rows = "".join(f'{i},"multi\nline {i}",{i * 2}\n' for i in range(60_000))  # > 1 MiB block
    frame = read_one(("id,text,double\n" + rows).encode())
    assert len(frame) == 60_000
    assert frame["text"].iloc[59_999] == "multi\nline 59999"
    assert frame["double"].iloc[59_999] == 119_998


def test_header_only_gives_empty_frame_with_columns() -> None:
    frame = read_one(b"id,name,amount\n")
    assert list(frame.columns) == ["id", "name", "amount"]
    assert len(frame) == 0


def test_ragged_row_names_the_row() -> None:
    with pytest.raises(ReadError, match=r"^row 4 has 3 fields, expected 2$"):
        read_one(b"a,b\n1,2\n3,4\n5,6,7\n8,9\n")
    with pytest.raises(ReadError, match=r"row 3 \(line 4\) has 1 field, expected 2"):
        read_one(b'a,b\n1,"x\ny"\n3\n')


@pytest.mark.parametrize(
    "data",
    [
        b"PK\x03\x04\x14\x00\x00\x00\x08\x00binary zip stuff",
        b"PAR1\x00\x00\x15\x04",
        bytes(range(256)),
    ],
)
def test_binary_named_csv(data: bytes) -> None:
    with pytest.raises(ReadError, match="not a CSV: binary content"):
        read_one(data)


@pytest.mark.parametrize("data", [b"", b"\n\n  \n", b"\xef\xbb\xbf"])
def test_empty_file(data: bytes) -> None:
    with pytest.raises(ReadError, match="empty file"):
        read_one(data)


def test_duplicate_column_names_error_or_dedupe() -> None:
    with pytest.raises(ReadError, match=r"duplicate column names: a \(x2\)"):
        read_one(b"a,b,a\n1,2,3\n")
    frame = read_one(b"a,b,a,\n1,2,3,4\n", duplicate_columns="dedupe")
    assert records(frame) == [{"a": 1, "b": 2, "a_2": 3, "column_4": 4}]


def test_sources_bytes_path_and_stream(tmp_path: Path) -> None:
    data = b"a,b\n1,2\n"
    path = tmp_path / "x.csv"
    path.write_bytes(data)
    for source in (data, path, io.BytesIO(data)):
        assert records(read_table(source, "csv")[0].frame) == [{"a": 1, "b": 2}]
    with pytest.raises(ReadError, match="cannot read"):
        read_table(tmp_path / "missing.csv", "csv")
    # Local files are memory-mapped: the same sniffing and errors apply.
    latin = tmp_path / "latin.csv"
    latin.write_bytes("k;v\nÄ;1\n".encode("latin-1"))
    assert records(read_table(latin, "csv")[0].frame) == [{"k": "Ä", "v": 1}]
    ragged = tmp_path / "ragged.csv"
    ragged.write_bytes(b"a,b\n1\n")
    with pytest.raises(ReadError, match="row 2 has 1 field, expected 2"):
        read_table(ragged, "csv")
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(ReadError, match="empty file"):
        read_table(empty, "csv")
    with pytest.raises(ReadError, match="unsupported format 'xml'"):
        read_table(data, "xml")


# --- detect_format -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "mime", "expected"),
    [
        ("sales.csv", "text/csv", "csv"),
        ("sales.CSV", None, "csv"),
        ("data", "text/tab-separated-values", "tsv"),
        ("book.xlsx", "application/octet-stream", "xlsx"),
        ("x.json", "application/json", "json"),
        ("x.jsonl", None, "jsonl"),
        ("x.ndjson", None, "jsonl"),
        ("x.parquet", None, "parquet"),
        ("Budget", "application/vnd.google-apps.spreadsheet", None),
        ("doc.docx", None, None),
        ("notes.txt", "text/plain", None),
    ],
)
def test_detect_format(name: str, mime: str | None, expected: str | None) -> None:
    assert detect_format(name, mime) == expected


# --- XLSX ----------------------------------------------------------------------------------


def make_xlsx(sheets: dict[str, pd.DataFrame]) -> bytes:
    buffer = io.BytesIO()
    with pd.ExcelWriter(buffer, engine="openpyxl") as writer:
        for name, frame in sheets.items():
            frame.to_excel(writer, sheet_name=name, index=False)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def workbook() -> bytes:
    return make_xlsx(
        {
            "Sales": pd.DataFrame({"id": [1, 2], "amount": [9.5, 3.0]}),
            "Regions": pd.DataFrame({"code": ["EU", "US"], "name": ["Europe", "America"]}),
            "Notes": pd.DataFrame({"text": ["hello"]}),
        }
    )


def test_xlsx_first_sheet(workbook: bytes) -> None:
    [table] = read_table(workbook, "xlsx")
    assert table.name is None
    assert records(table.frame) == [{"id": 1, "amount": 9.5}, {"id": 2, "amount": 3.0}]


def test_xlsx_all_and_listed_sheets(workbook: bytes) -> None:
    tables = read_table(workbook, "xlsx", ReadOptions(excel=ExcelOptions(sheets="all")))
    assert [t.name for t in tables] == ["Sales", "Regions", "Notes"]
    assert records(tables[1].frame) == [
        {"code": "EU", "name": "Europe"},
        {"code": "US", "name": "America"},
    ]
    listed = read_table(
        workbook, "xlsx", ReadOptions(excel=ExcelOptions(sheets=["Notes", "Sales"]))
    )
    assert [t.name for t in listed] == ["Notes", "Sales"]
    assert listed[0].frame["text"].tolist() == ["hello"]
    with pytest.raises(ReadError, match=r"sheet\(s\) not found: Missing"):
        read_table(workbook, "xlsx", ReadOptions(excel=ExcelOptions(sheets=["Missing"])))


def test_xlsx_duplicate_and_blank_headers() -> None:
    data = make_xlsx({"S": pd.DataFrame([[1, 2, 3]], columns=["a", "a", "b"])})
    with pytest.raises(ReadError, match="duplicate column names: a"):
        read_table(data, "xlsx")
    options = ReadOptions(excel=ExcelOptions(duplicate_columns="dedupe"))
    assert list(read_table(data, "xlsx", options)[0].frame.columns) == ["a", "a_2", "b"]


def test_xlsx_zip_bomb_guard() -> None:
    big = pd.DataFrame({"filler": ["x" * 1000] * 300})  # ~300 KB of sheet XML, compresses well
    data = make_xlsx({"S": big})
    assert len(data) < 50_000
    options = ReadOptions(excel=ExcelOptions(max_uncompressed_bytes=100_000))
    with pytest.raises(ReadError, match="over the limit of 100000 bytes"):
        read_table(data, "xlsx", options)
    assert len(read_table(data, "xlsx")[0].frame) == 300  # default limit is fine


def test_xlsx_not_a_zip_or_corrupt() -> None:
    with pytest.raises(ReadError, match="not an xlsx file"):
        read_table(b"a,b\n1,2\n", "xlsx")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("hello.txt", "not a workbook")
    with pytest.raises(ReadError, match="not a readable xlsx"):
        read_table(buffer.getvalue(), "xlsx")


# --- JSON ----------------------------------------------------------------------------------

RECORDS = [{"id": 1, "name": "a", "tags": None}, {"id": 2, "name": "b", "score": 1.5}]


@pytest.mark.parametrize(
    ("data", "fmt"),
    [
        (json.dumps(RECORDS).encode(), "json"),
        (json.dumps({"data": RECORDS, "meta": {"n": 2}}).encode(), "json"),
        (json.dumps({"next": None, "items": RECORDS}).encode(), "json"),
        ("\n".join(json.dumps(r) for r in RECORDS).encode() + b"\n", "json"),
        ("\n".join(json.dumps(r) for r in RECORDS).encode(), "jsonl"),
    ],
    ids=["array", "wrapped-data", "wrapped-items", "lines-detected", "jsonl"],
)
def test_json_shapes(data: bytes, fmt: str) -> None:
    frame = read_table(data, fmt)[0].frame
    rows = records(frame)
    assert [row["id"] for row in rows] == [1, 2]
    assert [row["name"] for row in rows] == ["a", "b"]
    assert [row.get("score") for row in rows] == [None, 1.5]


def test_json_errors() -> None:
    with pytest.raises(ReadError, match="not valid JSON"):
        read_table(b'[{"a": 1},', "json")
    with pytest.raises(ReadError, match="line 2 is not valid JSON"):
        read_table(b'{"a": 1}\n{"a": \n', "jsonl")
    with pytest.raises(ReadError, match="several arrays"):
        read_table(b'{"x": [{"a": 1}], "y": [{"a": 2}]}', "json")
    with pytest.raises(ReadError, match="record 1 is a int"):
        read_table(b'[{"a": 1}, 5]', "json")
    with pytest.raises(ReadError, match="empty file"):
        read_table(b"  ", "json")


def test_json_lines_option_forced() -> None:
    options = ReadOptions(json=JsonOptions(lines=True))
    frame = read_table(b'{"a": 1}\n\n{"a": 2}\n', "json", options)[0].frame
    assert frame["a"].tolist() == [1, 2]


# --- Parquet -------------------------------------------------------------------------------


def test_parquet_roundtrip_keeps_types() -> None:
    table = pa.table(
        {
            "id": pa.array([1, None, 3], pa.int64()),
            "day": pa.array([datetime.date(2024, 1, 1), None, datetime.date(2024, 3, 1)]),
            "name": ["a", "b", None],
            "price": pa.array([1.25, 2.5, None], pa.float64()),
        }
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    [result] = read_table(buffer.getvalue(), "parquet")
    assert isinstance(result, Table)
    assert records(result.frame) == table.to_pylist()
    assert str(result.frame["id"].dtype) == "int64[pyarrow]"


def test_parquet_bad_input() -> None:
    with pytest.raises(ReadError, match="not a Parquet file"):
        read_table(b"a,b\n", "parquet")
    with pytest.raises(ReadError, match="not a readable Parquet"):
        read_table(b"PAR1garbagePAR1", "parquet")
