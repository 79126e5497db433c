"""Readers: bytes of a downloaded file → pandas DataFrames.

``detect_format`` maps a Drive file's MIME type / name to a format; ``read_table`` parses it.
"""

from __future__ import annotations

import contextlib
import mmap
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from shared.errors import ReadError
from shared.transform.readers.options import CsvOptions, ExcelOptions, JsonOptions, ReadOptions

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "FORMATS",
    "CsvOptions",
    "ExcelOptions",
    "JsonOptions",
    "ReadOptions",
    "Table",
    "detect_format",
    "read_table",
]

FORMATS = ("csv", "tsv", "xlsx", "json", "jsonl", "parquet")

_BY_MIME = {
    "text/csv": "csv",
    "application/csv": "csv",
    "text/tab-separated-values": "tsv",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "application/json": "json",
    "application/x-ndjson": "jsonl",
    "application/jsonl": "jsonl",
    "application/x-jsonlines": "jsonl",
    "application/vnd.apache.parquet": "parquet",
    "application/x-parquet": "parquet",
}
_BY_EXTENSION = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".xlsx": "xlsx",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}


@dataclass(frozen=True)
class Table:
    """One parsed table; ``name`` is the sheet name when several sheets were read, else None."""

    name: str | None
    frame: pd.DataFrame


def detect_format(name: str, mime_type: str | None = None) -> str | None:
    """Format of a file from its MIME type, else its extension; None when unsupported.

    A native Google Sheet returns None: the caller decides "csv" or "xlsx" (ReadOptions
    .sheets_export) because that is what the export produces.
    """
    if mime_type:
        mime = mime_type.split(";", 1)[0].strip().lower()
        if mime in _BY_MIME:
            return _BY_MIME[mime]
        if mime.startswith("application/vnd.google-apps."):
            return None
    suffix = Path(name).suffix.lower()
    return _BY_EXTENSION.get(suffix)


def read_table(
    source: bytes | BinaryIO | Path, fmt: str, options: ReadOptions | None = None
) -> list[Table]:
    """Parse ``source`` as ``fmt`` (one of FORMATS). Bad input raises ``ReadError``.

    Returns one Table per sheet for xlsx when several sheets are selected (named by sheet),
    otherwise a single Table with ``name=None``.
    """
    options = options or ReadOptions()
    if fmt in ("csv", "tsv"):
        from shared.transform.readers.csv import read_csv

        delimiter = "\t" if fmt == "tsv" else None
        with _csv_bytes(source) as text:
            frame = read_csv(
                text, options.csv, default_delimiter=delimiter, max_columns=options.max_columns
            )
            return [Table(None, frame)]
    data = _read_bytes(source)
    if fmt == "xlsx":
        from shared.transform.readers.excel import read_excel

        frames = read_excel(data, options.excel, options.max_columns)
        if options.excel.sheets == "first":
            return [Table(None, frame) for frame in frames.values()]
        return [Table(name, frame) for name, frame in frames.items()]
    if fmt in ("json", "jsonl"):
        from shared.transform.readers.json import read_json

        json_options = options.json
        if fmt == "jsonl" and json_options.lines is None:
            json_options = json_options.model_copy(update={"lines": True})
        return [Table(None, read_json(data, json_options, options.max_columns))]
    if fmt == "parquet":
        from shared.transform.readers.parquet import read_parquet

        return [Table(None, read_parquet(data, options.csv.dtype_backend))]
    raise ReadError(f"unsupported format {fmt!r} (supported: {', '.join(FORMATS)})")


@contextlib.contextmanager
def _csv_bytes(source: bytes | BinaryIO | Path) -> Iterator[bytes | mmap.mmap]:
    """A local file is memory-mapped (pyarrow parses it in place, no copy); else bytes."""
    if not isinstance(source, (str, Path)):
        yield _read_bytes(source)
        return
    try:
        with open(source, "rb") as handle:
            if os.fstat(handle.fileno()).st_size == 0:
                yield b""
                return
            mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as exc:
        raise ReadError(f"cannot read {source}: {exc.strerror}") from None
    try:
        yield mapped
    finally:
        with contextlib.suppress(BufferError):  # still exported: the GC unmaps it later
            mapped.close()


def _read_bytes(source: bytes | BinaryIO | Path) -> bytes:
    if isinstance(source, bytes):
        return source
    if isinstance(source, (bytearray, memoryview)):
        return bytes(source)
    if isinstance(source, (str, Path)):
        try:
            return Path(source).read_bytes()
        except OSError as exc:
            raise ReadError(f"cannot read {source}: {exc.strerror}") from None
    return source.read()
