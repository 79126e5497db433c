"""One storage contract, three backends: a local directory, ``s3://`` and ``gs://``.

``open_storage(url)`` picks the backend from the URL. The cloud SDKs are imported only when a
bucket backend is first used, so importing this package is cheap.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from shared.errors import StorageError
from shared.storage.base import ObjectInfo, Storage, guess_content_type, safe_key
from shared.storage.local import LocalStorage

__all__ = [
    "LocalStorage",
    "ObjectInfo",
    "Storage",
    "guess_content_type",
    "open_storage",
    "safe_key",
]


def _split_bucket_url(url: str) -> tuple[str, str]:
    rest = url.split("://", 1)[1]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise StorageError(f"storage URL {url!r} has no bucket name")
    return bucket, prefix


def open_storage(url: str, **options: Any) -> Storage:
    """Open ``s3://bucket/prefix``, ``gs://bucket/prefix``, ``file:///abs/dir`` or a plain path.

    ``options`` go to the backend's constructor (e.g. ``multipart_threshold`` for S3,
    ``resumable_threshold``/``chunk_size`` for GCS).
    """
    if not isinstance(url, str) or not url.strip():
        raise StorageError(f"storage URL must be a non-empty string, got {url!r}")
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "s3":
        from shared.storage.s3 import S3Storage

        return S3Storage(*_split_bucket_url(url), **options)
    if scheme in ("gs", "gcs"):
        from shared.storage.gcs import GcsStorage

        return GcsStorage(*_split_bucket_url(url), **options)
    if scheme == "file":
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise StorageError(f"file URL {url!r} names a remote host; use file:///abs/dir")
        # POSIX file URLs: the path is the percent-decoded URL path (what url2pathname does,
        # without importing urllib.request and its ~100 ms of http/ssl imports).
        return LocalStorage(unquote(parts.path), **options)
    if scheme:
        raise StorageError(f"unsupported storage URL scheme {scheme!r} in {url!r}")
    return LocalStorage(url, **options)
