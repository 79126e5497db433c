"""Helpers shared by the bucket backends (S3, GCS): root prefix, object names, payload sizing."""

from __future__ import annotations

import io
from typing import BinaryIO

from shared.errors import StorageError
from shared.storage.base import MAX_KEY_BYTES, check_key, check_prefix, stream_size


class BucketLayout:
    """Maps keys relative to ``scheme://bucket/prefix`` to full object names and URLs."""

    def __init__(self, scheme: str, bucket: str, prefix: str = "") -> None:
        if not bucket or "/" in bucket:
            raise StorageError(f"invalid bucket name {bucket!r} in {scheme}:// URL")
        stripped = prefix.strip("/")
        if stripped:
            try:
                check_key(stripped)
            except StorageError as exc:
                raise StorageError(f"unsafe prefix in {scheme}://{bucket}/{prefix}: {exc}") from exc
        self.scheme = scheme
        self.bucket = bucket
        self.root = f"{stripped}/" if stripped else ""
        self.base_url = f"{scheme}://{bucket}/{stripped}" if stripped else f"{scheme}://{bucket}"

    def name(self, key: str) -> str:
        """Full object name of a (checked) key."""
        name = self.root + check_key(key)
        if len(name.encode("utf-8")) > MAX_KEY_BYTES:
            raise StorageError(f"object name longer than {MAX_KEY_BYTES} bytes: {self.url(key)}")
        return name

    def list_prefix(self, prefix: str) -> str:
        """Full object-name prefix for listing keys that start with ``prefix``."""
        return self.root + check_prefix(prefix)

    def key_of(self, name: str) -> str | None:
        """Key of a listed object name, or None for names to hide (folder markers)."""
        if not name.startswith(self.root) or name.endswith("/"):
            return None
        return name[len(self.root) :]

    def url(self, key: str) -> str:
        """``scheme://bucket/prefix/key``."""
        return f"{self.scheme}://{self.bucket}/{self.root}{key}"


def as_stream(data: bytes | BinaryIO) -> tuple[BinaryIO, int]:
    """Return a seekable stream over ``data`` and the number of bytes it will yield."""
    if isinstance(data, bytes | bytearray | memoryview):
        return io.BytesIO(data), len(data)
    return data, stream_size(data)
