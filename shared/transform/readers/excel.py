"""XLSX reader (pandas with calamine, or openpyxl) behind a zip-bomb and a sheet-extent guard.

calamine (python-calamine, Rust) reads big sheets many times faster than openpyxl (see
``python -m bench.xlsx``); openpyxl is the fallback when it is not installed. Before either
engine runs, :func:`check_sheet_extents` scans the sheets' XML for the last row and column
any cell names: calamine allocates that whole rectangle up front and aborts the process when
it cannot (two cells, A1 and XFD1048576, ask for 512 GiB), and openpyxl pads every row to it.
Neither resolves XML entities (XXE, billion laughs): calamine refuses them, openpyxl's expat
does not fetch external ones and caps expansion.
"""

from __future__ import annotations

import importlib.util
import io
import zipfile
from collections.abc import Iterator
from typing import IO

import numpy as np
import pandas as pd

from shared.errors import ReadError
from shared.transform.readers.limits import check_columns
from shared.transform.readers.options import DEFAULT_MAX_COLUMNS, ExcelOptions
from shared.transform.readers.sniff import check_column_names

SCAN_BYTES = 16 * 1024 * 1024
_REF_BYTES = 10  # ' r="' is followed by at most 3 letters and 7 digits (XFD1048576)
_SPACES = np.frombuffer(b" \t\r\n", dtype=np.uint8)


def excel_engine(options: ExcelOptions) -> str:
    """The pandas engine for ``options.engine``: "auto" prefers calamine when installed."""
    if options.engine != "auto":
        return options.engine
    return "calamine" if importlib.util.find_spec("python_calamine") else "openpyxl"


def check_zip_size(data: bytes, limit: int) -> None:
    """Refuse a workbook that is not a zip or whose members inflate beyond ``limit`` bytes.

    Uses the sizes declared in the zip directory; openpyxl's zipfile reads enforce them.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except zipfile.BadZipFile:
        raise ReadError("not an xlsx file: content is not a zip archive") from None
    total = sum(member.file_size for member in members)
    if total > limit:
        raise ReadError(
            f"xlsx expands to {total} bytes uncompressed, over the limit of {limit} bytes "
            f"(compressed size {len(data)}); refusing a possible zip bomb"
        )


def check_sheet_extents(data: bytes, max_columns: int, max_cells: int) -> None:
    """Refuse a workbook with a sheet wider than ``max_columns`` or whose used range (last row
    x last column named by any cell) exceeds ``max_cells``, before an engine allocates it.

    Every worksheet is scanned (names are mapped to sheets only by the engines); a vectorized
    pass over its XML, at a few hundred MB/s.
    """
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        sheets = [
            info
            for info in archive.infolist()
            if info.filename.startswith("xl/worksheets/") and info.filename.endswith(".xml")
        ]
        for info in sheets:
            tags = _TagCount()
            with archive.open(info) as member:
                rows, columns = _extent(tags.pieces(member))
            name = info.filename.rsplit("/", 1)[-1]
            check_columns(columns, max_columns, f"xlsx {name}")
            rows = max(rows, tags.rows)
            if rows * columns <= max_cells < tags.cells:  # cells without r="", one after another
                raise ReadError(
                    f"xlsx {name} has {tags.cells:,} cells, over the limit of {max_cells:,} "
                    "(raise read.excel.max_cells to allow more)"
                )
            if rows * columns > max_cells:
                raise ReadError(
                    f"xlsx {name} spans {rows:,} rows x {columns:,} columns = "
                    f"{rows * columns:,} cells, over the limit of {max_cells:,} "
                    "(raise read.excel.max_cells to allow more)"
                )


class _TagCount:
    """Counts ``<row>`` and ``<c>`` elements while the extent scan reads the pieces: ``r``
    attributes are optional, and a sheet without them names no extent at all."""

    _CELLS = (b"<c>", b"<c ", b"<c/")
    _ROWS = (b"<row>", b"<row ", b"<row/")

    def __init__(self) -> None:
        self.rows = self.cells = 0

    def pieces(self, member: IO[bytes]) -> Iterator[bytes]:
        """:func:`_pieces`, counting each element once (not again in the overlap)."""
        carried = 0  # the piece's first bytes: the end of the block before, counted already
        for piece in _pieces(member):
            overlap = piece[:carried]
            self.cells += _count(piece, self._CELLS) - _count(overlap, self._CELLS)
            self.rows += _count(piece, self._ROWS) - _count(overlap, self._ROWS)
            carried = min(_REF_BYTES + 4, len(piece) - carried)  # what _pieces carries over
            yield piece


def _count(data: bytes, patterns: tuple[bytes, ...]) -> int:
    return sum(data.count(pattern) for pattern in patterns)


def _pieces(member: IO[bytes]) -> Iterator[bytes]:
    """The member in pieces that overlap by a reference's length, so none is cut in two."""
    tail = b""
    while block := member.read(SCAN_BYTES):
        yield tail + block
        tail = block[-(_REF_BYTES + 4) :]


def _extent(pieces: Iterator[bytes]) -> tuple[int, int]:
    """(last row, last column) named by the ``r="…"`` attributes of ``<row>`` and ``<c>``.

    Vectorized: the values are located, then only the longest ones (the biggest numbers and
    columns) are decoded. A value too long to be a reference counts as huge.
    """
    last_row = last_column = 0
    for piece in pieces:
        text = np.frombuffer(piece, dtype=np.uint8)
        if text.size < 5:
            continue
        # ' r="': whitespace, r, =, " (attributes such as ref= or paper= do not match)
        equals = np.flatnonzero(text[2:-2] == ord("=")) + 2
        equals = equals[(text[equals - 1] == ord("r")) & (text[equals + 1] == ord('"'))]
        hits = equals[np.isin(text[equals - 2], _SPACES)] + 2  # first byte of the value
        length = _value_lengths(text, hits)
        whole = length >= 0  # a value cut off at the end is in the next piece
        hits, length = hits[whole], length[whole]
        if hits.size == 0:
            continue
        n_letters = np.zeros(hits.size, dtype=np.int64)
        letter = np.ones(hits.size, dtype=bool)
        for k in range(4):
            byte = text[np.minimum(hits + k, text.size - 1)]
            letter &= (byte >= ord("A")) & (byte <= ord("Z")) & (k < length)
            n_letters += letter
        last_column = max(last_column, _biggest(text, hits, n_letters, 0, 26, ord("A") - 1))
        last_row = max(last_row, _biggest(text, hits + n_letters, length - n_letters, 1, 10, 48))
    return last_row, last_column


def _value_lengths(text: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Bytes before the closing quote of each value; -1 when cut off by the end of ``text``,
    and ``_REF_BYTES + 1`` when longer than any cell reference."""
    length = np.full(starts.size, -1, dtype=np.int64)
    for k in range(_REF_BYTES + 1):
        at = starts + k
        quote = (at < text.size) & (text[np.minimum(at, text.size - 1)] == ord('"'))
        length[quote & (length < 0)] = k
    too_long = (length < 0) & (starts + _REF_BYTES < text.size)
    length[too_long] = _REF_BYTES + 1
    return length


def _biggest(
    text: np.ndarray, starts: np.ndarray, lengths: np.ndarray, floor: int, base: int, zero: int
) -> int:
    """The biggest number among ``lengths`` digits at ``starts`` (longest first): a column
    (base 26, A=1) or a row (base 10). Longer than a reference can be: a huge number."""
    longest = int(lengths.max())
    if longest == 0:
        return floor - 1 if floor else 0
    if longest > _REF_BYTES:
        return np.iinfo(np.int32).max
    chosen = starts[lengths == longest]
    values = np.zeros(chosen.size, dtype=np.int64)
    for k in range(longest):
        values = values * base + text[chosen + k].astype(np.int64) - zero
    return int(values.max())


def read_excel(
    data: bytes, options: ExcelOptions, max_columns: int = DEFAULT_MAX_COLUMNS
) -> dict[str, pd.DataFrame]:
    """Read the selected sheets of an .xlsx workbook, keyed by sheet name, in workbook order."""
    if not data:
        raise ReadError("empty file")
    check_zip_size(data, options.max_uncompressed_bytes)
    check_sheet_extents(data, max_columns, options.max_cells)
    try:
        workbook = pd.ExcelFile(io.BytesIO(data), engine=excel_engine(options))
    except ImportError:
        raise  # the engine is missing from the package: a deploy defect, not a bad workbook
    except Exception as exc:  # the engines raise many types for corrupt workbooks
        raise ReadError(f"not a readable xlsx workbook: {exc}") from None
    with workbook:
        available = [str(name) for name in workbook.sheet_names]
        if options.sheets == "first":
            wanted = available[:1]
        elif options.sheets == "all":
            wanted = available
        else:
            missing = [name for name in options.sheets if name not in available]
            if missing:
                raise ReadError(
                    f"sheet(s) not found: {', '.join(missing)} (workbook has: "
                    f"{', '.join(available)})"
                )
            wanted = list(options.sheets)
        frames: dict[str, pd.DataFrame] = {}
        for sheet in wanted:
            try:
                frame = pd.read_excel(
                    workbook,
                    sheet_name=sheet,
                    header=options.header,
                    dtype_backend=options.dtype_backend,
                )
            except ImportError:
                raise
            except Exception as exc:
                raise ReadError(f"sheet {sheet!r}: cannot read: {exc}") from None
            frames[sheet] = _fix_columns(frame, options)
        return frames


def _fix_columns(frame: pd.DataFrame, options: ExcelOptions) -> pd.DataFrame:
    if options.header is None:
        frame.columns = [f"column_{i}" for i in range(1, frame.shape[1] + 1)]
        return frame
    # pandas renames blank headers to "Unnamed: 3" and duplicates to "a.1"; undo both so that
    # check_column_names sees the names as written in the sheet.
    raw_names = [None if str(name).startswith("Unnamed: ") else str(name) for name in frame.columns]
    raw_names = [_unmangle(name, raw_names[:i]) for i, name in enumerate(raw_names)]
    frame.columns = check_column_names(raw_names, options.duplicate_columns)
    return frame


def _unmangle(name: str | None, earlier: list[str | None]) -> str | None:
    """Map pandas' "a.1" back to "a" when "a" appears earlier in the header."""
    if name is None or "." not in name:
        return name
    base, _, suffix = name.rpartition(".")
    if suffix.isdigit() and base in earlier:
        return base
    return name
