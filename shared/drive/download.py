"""Fetch one file's bytes: alt=media for binary files, export for native Sheets.

Binary files are verified against the size and checksum Drive lists. Exports have neither
(Drive lists no md5 for native files, and an editor file's ``size`` is not its export's), so
an export is verified by what it is: an xlsx by the CRC-32 of every member of the zip, a csv
(or an xlsx written where it cannot be read back) by a second read whose sha256 must match;
both also by ``Content-Length`` when Drive sends one. A mismatch reads again, up to the retry
policy's attempts; an export that never verifies fails the download (``checksumMismatch``,
transient), so the input is tried again on the next run and nothing wrong is written.
"""

from __future__ import annotations

import io
import zipfile
from typing import IO, cast

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
        return _fetch_export(http, file, dest, sheet_format, chunk_size)
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
        exported=False,
        attempts=attempts,
        sha256=actual if algorithm == "sha256" else None,
        md5=actual if algorithm == "md5" else None,
    )


def _fetch_export(
    http: DriveHttp, file: DriveFile, dest: IO[bytes], sheet_format: str, chunk_size: int
) -> FetchResult:
    """Export a native Sheet into ``dest``, verified (see the module docstring)."""
    mime = export_mime(sheet_format)
    path, params = f"{file_path(file.id)}/export", {"mimeType": mime}
    start = dest.tell()
    by_crc = sheet_format == "xlsx" and _readable(dest)
    attempts, problem = 0, ""
    for _ in range(max(2, http.retry.max_attempts)):
        dest.seek(start)  # download truncates there: a new read replaces the last
        written, actual, tries = http.download(
            path, params, dest, expected_size=None, expected_digest=None, chunk_size=chunk_size
        )
        attempts += tries
        if by_crc:
            problem = _zip_problem(dest, start, written)
        else:
            _, again, tries = http.download(
                path,
                params,
                cast(IO[bytes], _Discard()),
                expected_size=None,  # a different size is a different digest
                expected_digest=None,
                chunk_size=chunk_size,
            )
            attempts += tries
            problem = (
                ""
                if again == actual
                else f"two reads differ (sha256 {actual[:12]}…, {again[:12]}…)"
            )
        if not problem:
            return FetchResult(
                file_id=file.id,
                path=file.path,
                mime_type=mime,
                bytes_written=written,
                exported=True,
                attempts=attempts,
                sha256=actual,
            )
        http.stats.add_retry("exportMismatch")
    raise DriveError(
        f"GET {path}: the {sheet_format} export of {file.path} could not be verified: {problem}",
        reason="checksumMismatch",
    )


def _readable(dest: IO[bytes]) -> bool:
    try:
        return bool(dest.readable())
    except (AttributeError, ValueError, OSError):
        return False


def _zip_problem(dest: IO[bytes], start: int, size: int) -> str:
    """Why the ``size`` bytes of ``dest`` from ``start`` are not an intact zip ("" if they are):
    every member is inflated and checked against its CRC-32. Leaves ``dest`` at their end."""
    dest.seek(start)
    data = dest.read(size)
    dest.seek(start + size)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            bad = archive.testzip()
    except Exception as exc:  # BadZipFile, zlib.error, EOFError...: all say "damaged"
        return f"not an intact xlsx ({type(exc).__name__}: {exc})"
    return f"member {bad} fails its CRC-32" if bad else ""


class _Discard:
    """A destination for a verifying second read: counts nothing, keeps nothing."""

    def tell(self) -> int:
        return 0

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0

    def truncate(self, size: int | None = None) -> int:
        return 0

    def write(self, data: bytes) -> int:
        return len(data)
