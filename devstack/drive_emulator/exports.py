"""files.export for native files: the formats Drive offers and the conversions we emulate."""

from __future__ import annotations

import csv
import io
import re
import threading
from pathlib import Path

from devstack.drive_emulator import mime
from devstack.drive_emulator.errors import ApiError
from devstack.drive_emulator.tree import Entry

_NUMBER = re.compile(r"-?\d+(\.\d+)?")
ODS = "application/x-vnd.oasis.opendocument.spreadsheet"
# What the real API lists in about.exportFormats for these types. Formats we do not render
# (PDF, ODS, DOCX...) answer 501 from the emulator rather than pretend.
EXPORT_FORMATS: dict[str, tuple[str, ...]] = {
    mime.SPREADSHEET: (
        mime.XLSX,
        ODS,
        "application/vnd.oasis.opendocument.spreadsheet",
        "application/pdf",
        mime.CSV,
        mime.TSV,
        "application/zip",
    ),
    mime.DOCUMENT: (
        "application/rtf",
        "application/vnd.oasis.opendocument.text",
        "text/html",
        "application/pdf",
        "text/markdown",
        "application/epub+zip",
        "application/zip",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        mime.PLAIN,
    ),
}
_EMULATED = {
    mime.SPREADSHEET: {mime.CSV, mime.TSV, mime.XLSX},
    mime.DOCUMENT: {mime.PLAIN, "text/markdown"},
}


def conversion_unsupported() -> ApiError:
    """400 the real API gives for a target format the file type cannot be exported to."""
    return ApiError(
        400, "badRequest", "The requested conversion is not supported.", location="convertTo"
    )


class Exporter:
    """Renders exports, caching each by (path, mtime_ns, size, target)."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, int, int, str], bytes] = {}
        self._lock = threading.Lock()

    def export(self, entry: Entry, path: Path, target: str) -> bytes:
        """Bytes of `entry` exported to MIME type `target`; ApiError when not possible."""
        if entry.kind != "native":
            raise ApiError(403, "fileNotExportable", "Export only supports Docs Editors files.")
        if target not in EXPORT_FORMATS.get(entry.mime_type, ()):
            raise conversion_unsupported()
        if target not in _EMULATED.get(entry.mime_type, set()):
            raise ApiError(501, "notImplemented", f"The emulator does not render {target}.")
        st = path.stat()
        key = (str(path), st.st_mtime_ns, st.st_size, target)
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None:
            return cached
        data = _convert(path.read_bytes(), entry.source_format or "", target)
        with self._lock:
            self._cache[key] = data
        return data


def _convert(data: bytes, source: str, target: str) -> bytes:
    if source == "txt":
        return data
    if source == "xlsx" and target == mime.XLSX:
        return data
    if source == "csv" and target == mime.CSV:
        return data
    rows = _csv_rows(data) if source == "csv" else _first_sheet_rows(data)
    if target == mime.XLSX:
        return _xlsx_bytes(rows)
    return _delimited(rows, "\t" if target == mime.TSV else ",")


def _csv_rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def _first_sheet_rows(data: bytes) -> list[list[object]]:
    from openpyxl import load_workbook

    workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    try:
        sheet = workbook.worksheets[0]
        return [list(row) for row in sheet.iter_rows(values_only=True)]
    finally:
        workbook.close()


def _delimited(rows: list[list[object]] | list[list[str]], delimiter: str) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    for row in rows:
        writer.writerow(["" if cell is None else cell for cell in row])
    return out.getvalue().encode("utf-8")


def _xlsx_bytes(rows: list[list[str]] | list[list[object]]) -> bytes:
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "Sheet1"
    for row in rows:
        sheet.append([_typed(cell) for cell in row])
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def _typed(cell: object) -> object:
    """Numbers typed into a Sheet become numbers, as Sheets parses them."""
    if not isinstance(cell, str) or not _NUMBER.fullmatch(cell):
        return cell
    return float(cell) if "." in cell else int(cell)
