"""Fetch one file's bytes: alt=media for binary files, export for native Sheets."""

from __future__ import annotations

from typing import IO

from shared.drive.http import DriveHttp
from shared.drive.listing import file_path
from shared.drive.models import EXPORT_MIME_BY_FORMAT, DriveFile, FetchResult
from shared.errors import DriveError

CHUNK_SIZE = 1024 * 1024


def export_mime(sheet_format: str) -> str:
    """MIME type to export a native Sheet as, for ``csv`` (first sheet) or ``xlsx`` (all)."""
    try:
        return EXPORT_MIME_BY_FORMAT[sheet_format]
    except KeyError:
        raise ValueError(f"sheet_format must be 'csv' or 'xlsx', not {sheet_format!r}") from None


def expected_digest(file: DriveFile) -> tuple[str, str] | None:
    """The checksum to verify a download against: sha256 if Drive has one (faster), else md5."""
    if file.sha256:
        return "sha256", file.sha256
    if file.md5:
        return "md5", file.md5
    return None


def fetch_file(
    http: DriveHttp,
    file: DriveFile,
    dest: IO[bytes],
    *,
    sheet_format: str = "csv",
    chunk_size: int = CHUNK_SIZE,
) -> FetchResult:
    """Stream ``file`` into the seekable ``dest`` from its current position, verified.

    Binary files are checked against ``size`` and ``sha256Checksum`` (or ``md5Checksum``) and
    retried on mismatch; each retry truncates ``dest`` back to its starting position first.
    """
    if file.skip_reason:
        raise DriveError(f"{file.path}: {file.skip_reason}", reason="notDownloadable")
    if file.is_sheet:
        mime = export_mime(sheet_format)
        path, params = f"{file_path(file.id)}/export", {"mimeType": mime}
        size, digest = None, None
    else:
        mime = file.mime_type
        path = file_path(file.id)
        params = {"alt": "media", "acknowledgeAbuse": "false", "supportsAllDrives": "true"}
        size, digest = file.size, expected_digest(file)
    written, actual, attempts = http.download(
        path, params, dest, expected_size=size, expected_digest=digest, chunk_size=chunk_size
    )
    algorithm = digest[0] if digest else "sha256"
    return FetchResult(
        file_id=file.id,
        path=file.path,
        mime_type=mime,
        bytes_written=written,
        exported=file.is_sheet,
        attempts=attempts,
        sha256=actual if algorithm == "sha256" else None,
        md5=actual if algorithm == "md5" else None,
    )
