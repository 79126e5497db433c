"""MIME types the emulator reports, by on-disk name."""

from __future__ import annotations

FOLDER = "application/vnd.google-apps.folder"
SPREADSHEET = "application/vnd.google-apps.spreadsheet"
DOCUMENT = "application/vnd.google-apps.document"
SHORTCUT = "application/vnd.google-apps.shortcut"
GOOGLE_APPS_PREFIX = "application/vnd.google-apps."

CSV = "text/csv"
TSV = "text/tab-separated-values"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PLAIN = "text/plain"
OCTET_STREAM = "application/octet-stream"

# Drive guesses a binary file's type from its extension. It has no entry of its own for
# Parquet (the IANA type application/vnd.apache.parquet is recent), so it reports octet-stream.
BY_EXTENSION: dict[str, str] = {
    ".csv": CSV,
    ".tsv": TSV,
    ".xlsx": XLSX,
    ".xls": "application/vnd.ms-excel",
    ".json": "application/json",
    ".jsonl": "application/x-ndjson",
    ".ndjson": "application/x-ndjson",
    ".parquet": OCTET_STREAM,
    ".txt": PLAIN,
    ".pdf": "application/pdf",
    ".gz": "application/gzip",
    ".zip": "application/zip",
}

# On-disk suffix -> (native MIME type, format of the bytes on disk).
NATIVE_SUFFIXES: dict[str, tuple[str, str]] = {
    ".gsheet.csv": (SPREADSHEET, "csv"),
    ".gsheet.xlsx": (SPREADSHEET, "xlsx"),
    ".gdoc.txt": (DOCUMENT, "txt"),
}
SHORTCUT_SUFFIX = ".shortcut"


def for_binary(name: str) -> str:
    """MIME type Drive reports for an uploaded (binary) file called `name`."""
    lower = name.lower()
    dot = lower.rfind(".")
    return BY_EXTENSION.get(lower[dot:], OCTET_STREAM) if dot >= 0 else OCTET_STREAM


def native_kind(disk_name: str) -> tuple[str, str, str] | None:
    """(Drive name, native MIME type, source format) if `disk_name` marks a native file."""
    lower = disk_name.lower()
    for suffix, (mime, fmt) in NATIVE_SUFFIXES.items():
        if lower.endswith(suffix) and len(disk_name) > len(suffix):
            return disk_name[: -len(suffix)], mime, fmt
    return None
