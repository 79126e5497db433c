"""The storage contract every backend implements, plus key-safety and content-type helpers.

Keys are "/"-separated paths relative to a root prefix (a local directory, an S3 or GCS
bucket + prefix). A key is *safe* when :func:`key_problem` finds nothing, which is exactly when
``safe_key(key) == key``: no ``..``/``.``/empty segments, no leading "/", no backslashes, no
control characters, at most ``MAX_KEY_BYTES``. Backends reject unsafe keys (:func:`check_key`)
so that nothing can ever be written outside the root, and event handlers ignore them.
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO, Protocol, runtime_checkable

from shared.errors import StorageError

__all__ = [
    "DEFAULT_CONTENT_TYPE",
    "LIST_PAGE_MAX",
    "MAX_KEY_BYTES",
    "ObjectInfo",
    "Storage",
    "check_key",
    "check_list_args",
    "check_prefix",
    "guess_content_type",
    "key_problem",
    "safe_key",
    "stream_size",
]

# S3 and GCS both cap object names at 1024 bytes of UTF-8; the root prefix counts too.
MAX_KEY_BYTES = 1024
LIST_PAGE_MAX = 1000  # the most keys ListObjectsV2 and objects.list return per page
DEFAULT_CONTENT_TYPE = "application/octet-stream"

# C0 controls, DEL and C1 controls. NUL is among them.
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f]")

_CONTENT_TYPES = {
    ".parquet": "application/vnd.apache.parquet",
    ".csv": "text/csv",
    ".tsv": "text/tab-separated-values",
    ".json": "application/json",
    ".jsonl": "application/jsonl",
    ".ndjson": "application/jsonl",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".txt": "text/plain",
    ".gz": "application/gzip",
}


@dataclass(frozen=True)
class ObjectInfo:
    """What a backend knows about one stored object; ``key`` is relative to the root."""

    key: str
    size: int
    etag: str | None
    updated: datetime | None


@runtime_checkable
class Storage(Protocol):
    """One narrow contract for a local directory, an S3 prefix or a GCS prefix."""

    base_url: str

    def read(self, key: str) -> bytes:
        """Return the whole object; raise ``StorageNotFound`` if absent."""
        ...

    def open_read(self, key: str) -> BinaryIO:
        """Open the object for streaming reads; raise ``StorageNotFound`` if absent."""
        ...

    def write(
        self, key: str, data: bytes | BinaryIO, *, content_type: str | None = None
    ) -> ObjectInfo:
        """Store ``data`` at ``key``; the object appears only once complete."""
        ...

    def create_if_absent(self, key: str, data: bytes) -> bool:
        """Atomically create ``key``; return False (and change nothing) if it exists."""
        ...

    def stat(self, key: str) -> ObjectInfo | None:
        """Return the object's info, or None if it does not exist."""
        ...

    def exists(self, key: str) -> bool:
        """Return True if an object exists at ``key``."""
        ...

    def list(
        self, prefix: str = "", *, start_after: str | None = None, limit: int | None = None
    ) -> Iterator[ObjectInfo]:
        """Yield every object whose key starts with ``prefix`` (recursive, sorted).

        ``start_after``: only keys sorting strictly after it (S3's ``StartAfter``). ``limit``:
        at most this many objects, asked for in pages no bigger than needed, so the first
        ``limit`` keys after ``start_after`` cost one request on a bucket backend.
        """
        ...

    def delete(self, key: str) -> None:
        """Delete the object at ``key``; deleting an absent object is not an error."""
        ...

    def url(self, key: str) -> str:
        """Return the full URL of ``key`` (e.g. ``s3://bucket/prefix/key``)."""
        ...


def safe_key(path: str) -> str:
    """Turn any path-like string into a key that cannot escape the storage root.

    Backslashes become "/", control characters (NUL included) become "_", and empty,
    "." and ".." segments are dropped, so a leading "/" or any ``..`` is neutralized.
    Unicode and spaces are kept. Raises ``StorageError`` if nothing usable is left or the
    key is longer than ``MAX_KEY_BYTES`` in UTF-8.
    """
    if not isinstance(path, str):
        raise StorageError(f"storage key must be a str, got {type(path).__name__}")
    cleaned = _CONTROL_CHARS.sub("_", path.replace("\\", "/"))
    segments = [part for part in cleaned.split("/") if part not in ("", ".", "..")]
    key = "/".join(segments)
    if not key:
        raise StorageError(f"storage key {path!r} has no usable path segments")
    try:
        encoded = key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise StorageError(f"storage key {path!r} is not valid unicode text") from exc
    if len(encoded) > MAX_KEY_BYTES:
        raise StorageError(f"storage key is longer than {MAX_KEY_BYTES} bytes: {key[:80]!r}...")
    return key


def stream_size(stream: BinaryIO) -> int:
    """Bytes left in a seekable stream from its current position (the position is kept)."""
    if not stream.seekable():
        raise StorageError("write() needs bytes or a seekable binary stream")
    start = stream.tell()
    end = stream.seek(0, 2)
    stream.seek(start)
    return end - start


def key_problem(key: str) -> str | None:
    """Why ``key`` is not a safe key, or ``None`` when it is: the one rule set for keys."""
    if not isinstance(key, str):
        return f"key must be a str, got {type(key).__name__}"
    if not key:
        return "empty key"
    if "\x00" in key:
        return "key contains a NUL byte"
    if _CONTROL_CHARS.search(key):
        return "key contains a control character"
    if key.startswith("/") or "\\" in key:
        return "key is an absolute or backslash path"
    if any(part in ("", ".", "..") for part in key.split("/")):
        return "key contains empty, '.' or '..' segments"
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        return "key is not valid unicode text"
    if size > MAX_KEY_BYTES:
        return f"key is longer than {MAX_KEY_BYTES} bytes"
    return None


def check_key(key: str) -> str:
    """Return ``key`` unchanged if it is already safe; otherwise raise ``StorageError``.

    Backends call this on every key they are handed, so a caller's bug cannot write
    outside the root (use ``safe_key`` to *build* keys from untrusted names).
    """
    if key_problem(key) is None:
        return key
    try:
        cleaned = safe_key(key)
    except StorageError as exc:
        raise StorageError(f"unsafe storage key {key!r}: {exc}") from exc
    raise StorageError(f"unsafe storage key {key!r} (a safe form would be {cleaned!r})")


def check_list_args(start_after: str | None, limit: int | None) -> None:
    """Reject a ``list`` call's ``start_after`` that is not a str, or a ``limit`` below 1."""
    if start_after is not None and not isinstance(start_after, str):
        raise StorageError(f"start_after must be a str, got {type(start_after).__name__}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise StorageError(f"limit must be a positive int, got {limit!r}")


def check_prefix(prefix: str) -> str:
    """Validate a listing prefix: "" or a safe key, optionally ending in "/"."""
    if prefix == "":
        return prefix
    body = prefix[:-1] if prefix.endswith("/") else prefix
    check_key(body)
    return prefix


def guess_content_type(key: str) -> str:
    """Guess a Content-Type from the key's extension (parquet, csv, json, jsonl, xlsx, ...)."""
    name = key.rsplit("/", 1)[-1].lower()
    dot = name.rfind(".")
    if dot > 0 and name[dot:] in _CONTENT_TYPES:
        return _CONTENT_TYPES[name[dot:]]
    guessed, _encoding = mimetypes.guess_type(name, strict=False)
    return guessed or DEFAULT_CONTENT_TYPE
