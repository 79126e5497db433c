"""Helpers for the storage tests: backend detection, test thresholds, a failing stream."""

from __future__ import annotations

import io

from shared.storage import Storage, open_storage

MIB = 1024 * 1024
# Small enough to keep the suite quick, large enough to force S3 multipart (5 MiB minimum part)
# and a multi-chunk GCS resumable upload.
SMALL_THRESHOLD = 5 * MIB
GCS_CHUNK = 1 * MIB
LARGE_SIZE = 12 * MIB


def backend_of(url: str) -> str:
    """'s3', 'gcs' or 'local' for a storage URL."""
    if url.startswith("s3://"):
        return "s3"
    if url.startswith("gs://"):
        return "gcs"
    return "local"


def open_small_threshold(url: str) -> Storage:
    """Open ``url`` with the test thresholds (multipart/resumable above 5 MiB)."""
    backend = backend_of(url)
    if backend == "s3":
        return open_storage(url, multipart_threshold=SMALL_THRESHOLD)
    if backend == "gcs":
        return open_storage(url, resumable_threshold=SMALL_THRESHOLD, chunk_size=GCS_CHUNK)
    return open_storage(url)


class FailingStream(io.BytesIO):
    """A seekable stream that raises ``OSError`` once a read reaches ``fail_at`` bytes.

    Stands in for a writer dying mid-way (a broken pipe, a crashed producer).
    """

    def __init__(self, data: bytes, fail_at: int) -> None:
        super().__init__(data)
        self.fail_at = fail_at

    def _check(self, size: int | None) -> None:
        wanted = len(self.getbuffer()) if size is None or size < 0 else size
        if self.tell() + wanted >= self.fail_at:
            raise OSError(f"simulated writer failure at byte {self.tell()}")

    def read(self, size: int | None = -1) -> bytes:
        self._check(size)
        return super().read(size)

    def read1(self, size: int | None = -1) -> bytes:
        self._check(size)
        return super().read1(size)

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        self._check(len(buffer))
        return super().readinto(buffer)
