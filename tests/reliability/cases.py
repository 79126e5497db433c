"""The bad-input corpus: every hostile file, with the outcome it must get.

Each case builds its bytes (big and binary cases are generated, never committed) and states
the status drivepipe must give it and a phrase its error must contain. ``build_corpus`` writes
every case plus the good files into one Drive folder, so the whole corpus runs as ONE sync: no
case may crash the run, and every good file must still be written.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

# Every input has id and amount; the pipeline casts amount, so a file without it must fail.
STEPS = [{"op": "normalize_columns"}, {"op": "cast", "columns": {"amount": "float64"}}]
XLSX_LIMIT = 4 * 1024 * 1024  # read.excel.max_uncompressed_bytes for the corpus pipeline
LONG_CELL = 10 * 1024 * 1024


@dataclass(frozen=True)
class Case:
    """One input file and the outcome it must get."""

    path: str  # where it sits in the Drive folder (its Drive name is the last part)
    make: Callable[[], bytes]
    status: str  # "written" or "failed"
    error: str = ""  # a phrase the error must contain (failed cases)
    rows: int | None = None  # rows written (written cases)
    drive_name: str | None = None  # a hostile Drive name, set through .drive.json


def _xlsx(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_excel(buffer, index=False)
    return buffer.getvalue()


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def _zip_bomb() -> bytes:
    """A valid-looking xlsx whose one sheet inflates to 16x the corpus limit (tiny on disk)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bomb:
        bomb.writestr("[Content_Types].xml", "<Types/>")
        with bomb.open("xl/worksheets/sheet1.xml", "w") as sheet:
            zeros = b"0" * (1024 * 1024)
            for _ in range(16 * XLSX_LIMIT // len(zeros)):
                sheet.write(zeros)
    return buffer.getvalue()


def _far_corner_xlsx() -> bytes:
    """A tiny workbook with cells at A1 and XFD1048576: its used range is 17 billion cells."""
    ns = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    sheet = (
        f'<?xml version="1.0"?><worksheet xmlns="{ns}"><sheetData>'
        '<row r="1"><c r="A1" t="inlineStr"><is><t>id</t></is></c></row>'
        '<row r="1048576"><c r="XFD1048576"><v>1</v></c></row></sheetData></worksheet>'
    )
    original = _xlsx(pd.DataFrame({"id": [1], "amount": [1.0]}))
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(original)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            body = sheet.encode() if info.filename.endswith("sheet1.xml") else src.read(info)
            dst.writestr(info, body)
    return out.getvalue()


def _wide_csv(columns: int = 100_000) -> bytes:
    """1.3 MB: a 100,000-column header and three rows (2.2 GB of RSS before read.max_columns)."""
    header = ",".join(f"c{i:05d}" for i in range(columns))
    return (header + "\n" + ("1," * (columns - 1) + "1\n") * 3).encode()


def _deep_line() -> bytes:
    """JSON Lines: a good line, then one nested 200,000 deep (pyarrow's parser segfaults)."""
    return b'{"id":1,"amount":2}\n{"id":2,"amount":' + b"[" * 200_000 + b"]" * 200_000 + b"}\n"


def _many_rows(count: int = 200_000) -> bytes:
    return ("id,amount\n" + "".join(f"{i},{i % 97}.5\n" for i in range(count))).encode()


GOOD: list[Case] = [
    Case("good/plain.csv", lambda: b"id,amount\n1,2.5\n2,3\n", "written", rows=2),
    Case(
        "good/book.xlsx",
        lambda: _xlsx(pd.DataFrame({"id": [1, 2, 3], "amount": [1.0, 2.0, 3.0]})),
        "written",
        rows=3,
    ),
    Case(
        "good/lines.jsonl", lambda: b'{"id":1,"amount":2}\n{"id":2,"amount":4}\n', "written", rows=2
    ),
    Case(
        "good/records.json",
        lambda: b'{"data": [{"id": 1, "amount": 2.5, "note": "[{\\"x"}, {"id": 2}]}',
        "written",
        rows=2,
    ),
    Case(
        "good/table.parquet",
        lambda: _parquet(pd.DataFrame({"id": [1], "amount": [9.5]})),
        "written",
        rows=1,
    ),
]

BAD: list[Case] = [
    Case("bad/empty.csv", lambda: b"", "failed", "empty"),
    Case("bad/header_only.csv", lambda: b"id,amount\n", "written", rows=0),
    Case(
        "bad/binary.csv",
        lambda: bytes(range(256)) * 64,
        "failed",
        "ReadError: not a CSV: binary content",
    ),
    Case(
        "bad/latin1.csv",
        lambda: "id,amount,city\n1,2,Zürich\n2,3,Besançon\n".encode("latin-1"),
        "written",
        rows=2,
    ),
    Case(
        "bad/utf16.csv",
        lambda: "id,amount\n1,2\n".encode("utf-16"),
        "written",
        rows=1,
    ),
    Case(
        "bad/ragged.csv",
        lambda: b"id,amount\n1,2\n3,4,5,6\n",
        "failed",
        "ReadError: row 3 has 4 fields, expected 2",
    ),
    Case(
        "bad/quoted_newlines.csv",
        lambda: b'id,amount,note\n1,2,"first line\nsecond line"\n2,3,"a ""quoted"" word"\n',
        "written",
        rows=2,
    ),
    Case("bad/dup_columns.csv", lambda: b"id,amount,amount\n1,2,3\n", "failed", "duplicate"),
    Case("bad/empty_column_name.csv", lambda: b"id,,amount\n1,x,2\n", "written", rows=1),
    Case(
        "bad/formula.csv",
        lambda: b"id,amount,note\n1,2,=cmd|' /C calc'!A0\n2,3,@SUM(A1)\n3,4,-2+3\n",
        "written",
        rows=3,
    ),
    Case("bad/bomb.xlsx", _zip_bomb, "failed", "over the limit"),
    Case("bad/not_a_zip.xlsx", lambda: b"PK\x03\x04 not really", "failed", "xlsx"),
    Case("bad/many_rows.csv", _many_rows, "written", rows=200_000),
    Case(
        "bad/schema_mismatch.parquet",
        lambda: _parquet(pd.DataFrame({"x": [1], "y": ["a"]})),
        "failed",
        "amount",
    ),
    Case(
        "bad/not_json.jsonl",
        lambda: b'{"id":1,"amount":2}\n{oops\n',
        "failed",
        "ReadError: JSON Lines: line 2 is not valid JSON",
    ),
    # Bounded parsing: each of these crashed or blew up the run before (issue 19).
    Case("bad/deep_array.json", lambda: b"[" * 400_000, "failed", "nested deeper than 64 levels"),
    Case(
        "bad/deep_object.json",
        lambda: b'[{"id":1,"amount":' + b'{"a":' * 80_000 + b"1" + b"}" * 80_001 + b"]",
        "failed",
        "nested deeper than 64 levels",
    ),
    Case("bad/deep_line.jsonl", _deep_line, "failed", "nested deeper than 64 levels"),
    Case("bad/wide.csv", _wide_csv, "failed", "has 100,000 columns, over the limit of 10,000"),
    Case(
        "bad/non_finite.json",
        lambda: b'[{"id":1,"amount":2.5},{"id":2,"amount":1e999999}]',
        "failed",
        "non-finite number",
    ),
    Case(
        "bad/nan.jsonl",
        lambda: b'{"id":1,"amount":2.5}\n{"id":2,"amount":NaN}\n',
        "failed",
        "non-finite number",
    ),
    Case("bad/far_corner.xlsx", _far_corner_xlsx, "failed", "16,384 columns, over the limit"),
    # Hostile Drive names: their outputs must stay under the destination prefix.
    Case(
        "names/dotdot.csv",
        lambda: b"id,amount\n1,1\n",
        "written",
        rows=1,
        drive_name="../../escape.csv",
    ),
    Case(
        "names/slashes.csv",
        lambda: b"id,amount\n1,1\n",
        "written",
        rows=1,
        drive_name="/etc/passwd.csv",
    ),
    Case(
        "names/backslash.csv",
        lambda: b"id,amount\n1,1\n",
        "written",
        rows=1,
        drive_name="..\\..\\win.csv",
    ),
    Case(
        "names/unicode.csv", lambda: b"id,amount\n1,1\n", "written", rows=1, drive_name="数据 ☃.csv"
    ),
]

# A single 10 MB line is longer than pyarrow's 1 MiB CSV block; the reader must still take it.
LONG_LINE = Case(
    "good/long_line.csv",
    lambda: b"id,amount,blob\n1,2," + b"x" * LONG_CELL + b"\n",
    "written",
    rows=1,
)
CASES = [*GOOD, LONG_LINE, *BAD]


def corpus_pipeline_body(dest_url: str, folder_id: str, output_format: str = "csv") -> dict:
    """The pipeline the corpus runs through (CSV output, so formula escaping is exercised)."""
    return {
        "source": {"folder_id": folder_id},
        "read": {"excel": {"max_uncompressed_bytes": XLSX_LIMIT}},
        "steps": STEPS,
        "output": {"url": dest_url, "format": output_format},
    }


def build_corpus(root: Path, cases: list[Case] = CASES) -> None:
    """Write every case into ``root`` (a Drive emulator folder), with hostile names applied."""
    overrides: dict[str, dict[str, dict[str, str]]] = {}
    for case in cases:
        path = root / case.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(case.make())
        if case.drive_name:
            folder = path.parent
            overrides.setdefault(str(folder), {})[path.name] = {"name": case.drive_name}
    for folder, entries in overrides.items():
        (Path(folder) / ".drive.json").write_text(json.dumps({"entries": entries}))
