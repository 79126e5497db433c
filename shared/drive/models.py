"""Value types of the Drive client: files, changes, fetch results, counters, MIME constants."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

FOLDER_MIME = "application/vnd.google-apps.folder"
SHORTCUT_MIME = "application/vnd.google-apps.shortcut"
SHEET_MIME = "application/vnd.google-apps.spreadsheet"
NATIVE_PREFIX = "application/vnd.google-apps."
CSV_MIME = "text/csv"
XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
EXPORT_MIME_BY_FORMAT = {"csv": CSV_MIME, "xlsx": XLSX_MIME}


@dataclass(frozen=True)
class DriveFile:
    """One fetchable (or knowingly skipped) file found by a walk."""

    id: str
    name: str
    path: str  # posix path relative to the walked root folder, unique within one walk
    mime_type: str
    size: int | None
    md5: str | None
    modified_time: str  # RFC 3339, as Drive sends it
    native: bool  # application/vnd.google-apps.*
    skip_reason: str | None = None  # set when the file cannot be fetched
    sha256: str | None = None  # sha256Checksum, when Drive has one (binary files)

    @property
    def is_sheet(self) -> bool:
        """True for a native Google Sheet (fetched by export)."""
        return self.mime_type == SHEET_MIME


@dataclass(frozen=True)
class DriveChange:
    """One entry of the changes feed: a file's latest state, or its removal.

    ``file`` is None when ``removed`` (deleted, or no longer visible to the credentials). A
    trashed file is not removed: ``trashed`` is True and ``file`` is set. ``file.path`` is only
    the file's name: the feed says nothing of ancestry beyond ``parents``, so the caller
    resolves paths (``DriveClient.get_file`` for parents it does not know).
    """

    file_id: str
    removed: bool
    time: str  # RFC 3339, as Drive sends it
    file: DriveFile | None = None
    parents: tuple[str, ...] = ()
    trashed: bool = False
    drive_id: str | None = None
    shortcut_target_id: str | None = None  # set for shortcuts (file describes the shortcut)

    @property
    def is_folder(self) -> bool:
        """True when the change is about a folder."""
        return self.file is not None and self.file.mime_type == FOLDER_MIME


@dataclass(frozen=True)
class ChangesPage:
    """Changes read from one token: one page, or (from ``DriveClient.changes``) all of them.

    Exactly one of the tokens is set: ``next_page_token`` while more pages follow, or
    ``new_start_page_token`` at the end, the token to store for the next run.
    """

    changes: tuple[DriveChange, ...]
    next_page_token: str | None = None
    new_start_page_token: str | None = None
    pages: int = 1


@dataclass(frozen=True)
class FetchResult:
    """What one successful fetch wrote into the destination stream."""

    file_id: str
    path: str
    mime_type: str  # of the bytes written (the export format for native Sheets)
    bytes_written: int
    exported: bool
    attempts: int
    # Hex digest of the bytes written, in the algorithm that verified them: sha256 when Drive
    # gave sha256Checksum (about 2x faster than md5 on CPUs with SHA extensions), else md5.
    # Exports have no checksum to verify; they get a sha256 of what was written.
    sha256: str | None = None
    md5: str | None = None

    @property
    def checksum(self) -> str:
        """``sha256:<hex>`` or ``md5:<hex>`` of the bytes written."""
        return f"sha256:{self.sha256}" if self.sha256 else f"md5:{self.md5}"


@dataclass
class ClientStats:
    """Thread-safe counters of one client: requests, retries by reason, bytes, listing events."""

    requests: int = 0
    bytes_downloaded: int = 0
    max_attempts: int = 0
    retries: Counter[str] = field(default_factory=Counter)
    # files.list bookkeeping: batched_queries, incomplete_batches, relisted_folders, ...
    listing: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add_request(self) -> None:
        """Count one HTTP request sent."""
        with self._lock:
            self.requests += 1

    def add_retry(self, reason: str) -> None:
        """Count one retry caused by ``reason``."""
        with self._lock:
            self.retries[reason] += 1

    def add_listing(self, key: str, count: int = 1) -> None:
        """Count a listing event (e.g. ``relisted_folders``) ``count`` times."""
        with self._lock:
            self.listing[key] += count

    def add_bytes(self, count: int) -> None:
        """Count bytes received from download or export bodies (failed attempts included)."""
        with self._lock:
            self.bytes_downloaded += count

    def note_attempts(self, attempts: int) -> None:
        """Record how many attempts one logical request used."""
        with self._lock:
            self.max_attempts = max(self.max_attempts, attempts)

    @property
    def total_retries(self) -> int:
        """All retries, whatever the reason."""
        with self._lock:
            return sum(self.retries.values())

    def snapshot(self) -> dict[str, Any]:
        """A consistent plain-dict copy of the counters."""
        with self._lock:
            return {
                "requests": self.requests,
                "bytes_downloaded": self.bytes_downloaded,
                "max_attempts": self.max_attempts,
                "retries": dict(self.retries),
                "listing": dict(self.listing),
            }
