"""The hostile corpus: files built to hurt a reader, beside good ones, for one sync with the
*default* limits (``bench.campaign``'s "hostile corpus" row measures its peak RSS and time).

Each case states the status it must get and, for a failure, a regular expression the *whole*
error must match (``re.fullmatch``): a case passes on its own reason, never on any message.
Every good row is tagged (``file`` column), so its output can be read back and compared.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from shared.transform.readers.options import DEFAULT_MAX_XLSX_UNCOMPRESSED_BYTES
from tests.reliability.cases import _deep_line, _far_corner_xlsx, _parquet, _wide_csv, _xlsx
from tests.reliability.lake import Row, tagged_rows

PARQUET = re.escape("ReadError: not a readable Parquet file: ")
DEPTH = re.escape("ReadError: JSON is nested deeper than 64 levels (raise read.json.max_depth")
SLOW_XLSX_ROWS = 1_680_000  # x 6 cells of 16 bytes: 180 MB of sheet XML in a 0.9 MB zip


@dataclass(frozen=True)
class Hostile:
    """One file of the corpus and what must become of it."""

    path: str  # where it sits in the Drive folder (its Drive name unless ``drive_name``)
    make: Callable[[], bytes]
    error: str | None = None  # a failure: the regex the whole error must match
    rows: list[Row] | None = None  # a success: the rows its outputs must hold
    drive_name: str | None = None


def _tagged_csv(tag: str, count: int) -> Callable[[], bytes]:
    return lambda: ("file,row\n" + "".join(f"{tag},{i}\n" for i in range(count))).encode()


def _corrupt_parquet() -> bytes:
    """A valid Parquet file with its data pages overwritten (footer and magic intact)."""
    data = bytearray(_parquet(pd.DataFrame({"file": ["x"] * 1000, "row": list(range(1000))})))
    for offset in range(8, len(data) // 2, 7):
        data[offset] ^= 0x5A
    return bytes(data)


def _truncated_parquet() -> bytes:
    data = _parquet(pd.DataFrame({"file": ["x"] * 1000, "row": list(range(1000))}))
    return data[: len(data) // 2]


def _bomb(limit: int = DEFAULT_MAX_XLSX_UNCOMPRESSED_BYTES) -> bytes:
    """An xlsx whose one sheet inflates to twice the default limit (400 KB on disk)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as bomb:
        bomb.writestr("[Content_Types].xml", "<Types/>")
        with bomb.open("xl/worksheets/sheet1.xml", "w") as sheet:
            zeros = b"0" * (4 * 1024 * 1024)
            for _ in range(2 * limit // len(zeros)):
                sheet.write(zeros)
    return buffer.getvalue()


def _slow_xlsx(rows: int = SLOW_XLSX_ROWS) -> bytes:
    """The workbook of issue 19 that openpyxl did not finish in 240 s: a 0.9 MB xlsx holding
    180 MB of sheet XML (``rows`` rows of 6 numeric cells, without the optional ``r``
    attributes, so the XML compresses 200:1 and slips under the zip-bomb limit)."""
    ns = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    original = _xlsx(pd.DataFrame({"a": [1]}))
    row = ("<row>" + "<c><v>7</v></c>" * 6 + "</row>").encode()
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(original)) as src,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst,
    ):
        for info in src.infolist():
            if not info.filename.endswith("sheet1.xml"):
                dst.writestr(info, src.read(info))
                continue
            with dst.open(info.filename, "w") as sheet:
                sheet.write(f'<?xml version="1.0"?><worksheet xmlns="{ns}"><sheetData>'.encode())
                header = "".join(f'<c t="inlineStr"><is><t>{c}</t></is></c>' for c in "abcdef")
                sheet.write(f"<row>{header}</row>".encode())
                block = row * 10_000
                for _ in range(rows // 10_000):
                    sheet.write(block)
                sheet.write(row * (rows % 10_000) + b"</sheetData></worksheet>")
    return out.getvalue()


def corpus(slow_rows: int = SLOW_XLSX_ROWS) -> list[Hostile]:
    """Every hostile case and the good files beside them."""
    good = [
        Hostile("good/plain.csv", _tagged_csv("plain", 5), rows=tagged_rows("plain", 5)),
        Hostile(
            "good/book.xlsx",
            lambda: _xlsx(pd.DataFrame({"file": ["book"] * 3, "row": [0, 1, 2]})),
            rows=tagged_rows("book", 3),
        ),
        Hostile(
            "good/lines.jsonl",
            lambda: b'{"file":"lines","row":0}\n{"file":"lines","row":1}\n',
            rows=tagged_rows("lines", 2),
        ),
        Hostile(
            "good/table.parquet",
            lambda: _parquet(pd.DataFrame({"file": ["pq"] * 4, "row": [0, 1, 2, 3]})),
            rows=tagged_rows("pq", 4),
        ),
        # Three names that are one after sanitising: each its own key, all rows kept.
        Hostile("names/nul.csv", _tagged_csv("nul", 2), rows=tagged_rows("nul", 2),
                drive_name="a\x00b.csv"),
        Hostile("names/newline.csv", _tagged_csv("nl", 2), rows=tagged_rows("nl", 2),
                drive_name="a\nb.csv"),
        Hostile("names/a_b.csv", _tagged_csv("ab", 2), rows=tagged_rows("ab", 2)),
    ]  # fmt: skip
    bad = [
        Hostile("bad/deep_array.json", lambda: b"[" * 400_000, error=DEPTH + ".*"),
        Hostile(
            "bad/deep_object.json",
            lambda: b'[{"id":1,"amount":' + b'{"a":' * 80_000 + b"1" + b"}" * 80_001 + b"]",
            error=DEPTH + ".*",
        ),
        Hostile("bad/deep_line.jsonl", _deep_line, error=DEPTH + ".*"),
        Hostile(
            "bad/wide.csv",
            _wide_csv,
            error=re.escape(
                "ReadError: the CSV header row has 100,000 columns, over the limit of 10,000 "
                "(raise read.max_columns to allow more)"
            ),
        ),
        Hostile(
            "bad/far_corner.xlsx",
            _far_corner_xlsx,
            error=re.escape(
                "ReadError: xlsx sheet1.xml has 16,384 columns, over the limit of 10,000 "
                "(raise read.max_columns to allow more)"
            ),
        ),
        Hostile(
            "bad/bomb.xlsx",
            _bomb,
            error=r"ReadError: xlsx expands to \d+ bytes uncompressed, over the limit of "
            rf"{DEFAULT_MAX_XLSX_UNCOMPRESSED_BYTES} bytes \(compressed size \d+\); refusing a "
            r"possible zip bomb",
        ),
        Hostile("bad/corrupt.parquet", _corrupt_parquet, error=PARQUET + ".*"),
        Hostile("bad/truncated.parquet", _truncated_parquet, error=PARQUET + ".*"),
        Hostile(
            "bad/non_finite.json",
            lambda: b'[{"file":"x","row":1},{"file":"x","row":1e999999}]',
            error=re.escape("ReadError: column row: a non-finite number") + ".*",
        ),
    ]
    slow = Hostile(
        "bad/slow.xlsx",
        lambda: _slow_xlsx(slow_rows),
        error=re.escape(
            f"ReadError: xlsx sheet1.xml has {6 * slow_rows + 6:,} cells, over the limit of "
            "10,000,000 (raise read.excel.max_cells to allow more)"
        ),
    )
    return [*good, *bad, slow]


def build(root: Path, cases: list[Hostile]) -> None:
    """Write every case into ``root`` (a Drive emulator folder), hostile names applied."""
    overrides: dict[Path, dict[str, dict[str, str]]] = {}
    for case in cases:
        path = root / case.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(case.make())
        if case.drive_name:
            overrides.setdefault(path.parent, {})[path.name] = {"name": case.drive_name}
    for folder, entries in overrides.items():
        (folder / ".drive.json").write_text(json.dumps({"entries": entries}))
