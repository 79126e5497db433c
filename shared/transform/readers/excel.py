"""XLSX reader (openpyxl via pandas) with a zip-bomb guard."""

from __future__ import annotations

import io
import zipfile

import pandas as pd

from shared.errors import ReadError
from shared.transform.readers.options import ExcelOptions
from shared.transform.readers.sniff import check_column_names


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


def read_excel(data: bytes, options: ExcelOptions) -> dict[str, pd.DataFrame]:
    """Read the selected sheets of an .xlsx workbook, keyed by sheet name, in workbook order."""
    if not data:
        raise ReadError("empty file")
    check_zip_size(data, options.max_uncompressed_bytes)
    try:
        workbook = pd.ExcelFile(io.BytesIO(data), engine="openpyxl")
    except Exception as exc:  # openpyxl raises many types for corrupt workbooks
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
