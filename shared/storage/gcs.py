"""GCS backend (google-cloud-storage). Honours STORAGE_EMULATOR_HOST and GOOGLE_CLOUD_PROJECT.

google.cloud.storage is imported lazily, on first use, so ``import shared.storage`` stays cheap.

Every call retries transient failures (connection errors, 408/429/5xx) for at most
``DRIVEPIPE_GCS_RETRY_SECONDS`` (default 20 s; the library's own default is 120 s, which let a
GCS outage hold ``POST /sync`` for 99 s before a 500). What is still failing then raises
:class:`~shared.errors.StorageUnavailable`: ``503`` on HTTP, a redelivery for events.

Only object permissions are needed (``storage.objects.*``): whether a bucket exists is asked
with ``objects.list``, not ``buckets.get``, which ``roles/storage.objectViewer`` and
``roles/storage.objectAdmin`` do not grant.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from shared import crashpoints
from shared.errors import ConfigError, StorageError, StorageNotFound, StorageUnavailable
from shared.storage._bucket import BucketLayout, as_stream
from shared.storage.base import LIST_PAGE_MAX, ObjectInfo, check_list_args, guess_content_type

if TYPE_CHECKING:
    from google.cloud.storage import Blob, Bucket, Client

MIB = 1024 * 1024
DEFAULT_RESUMABLE_THRESHOLD = 8 * MIB
CHUNK_GRANULARITY = 256 * 1024  # resumable chunk sizes must be multiples of 256 KiB
RETRY_ENV = "DRIVEPIPE_GCS_RETRY_SECONDS"
DEFAULT_RETRY_SECONDS = 20.0
CONNECT_TIMEOUT_SECONDS = 10.0
READ_TIMEOUT_SECONDS = 60.0


def retry_seconds() -> float:
    """The retry budget of one GCS call (``DRIVEPIPE_GCS_RETRY_SECONDS``, positive seconds)."""
    raw = os.environ.get(RETRY_ENV, "").strip()
    if not raw:
        return DEFAULT_RETRY_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise ConfigError(f"{RETRY_ENV} {raw!r} must be a positive number of seconds")
    return value


def _chunk_size(requested: int) -> int:
    return max(CHUNK_GRANULARITY, requested // CHUNK_GRANULARITY * CHUNK_GRANULARITY)


class GcsStorage:
    """A ``Storage`` over ``gs://bucket/prefix``; one lazily created client."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        resumable_threshold: int = DEFAULT_RESUMABLE_THRESHOLD,
        chunk_size: int | None = None,
        client: Client | None = None,
        retry_budget: float | None = None,
    ) -> None:
        self._layout = BucketLayout("gs", bucket, prefix)
        self.retry_budget = retry_seconds() if retry_budget is None else retry_budget
        self.bucket = bucket
        self.base_url = self._layout.base_url
        self.resumable_threshold = max(resumable_threshold, 1)
        self.chunk_size = _chunk_size(chunk_size or max(self.resumable_threshold, MIB))
        self._client = client
        self._client_lock = threading.Lock()
        self._bucket_handle: Bucket | None = None
        self._bucket_checked = False

    def __repr__(self) -> str:
        return f"GcsStorage({self.base_url!r})"

    # -- plumbing ----------------------------------------------------------------------------

    @property
    def client(self) -> Client:
        """The storage client, created on first use (anonymous against an emulator)."""
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    from google.cloud import storage

                    project = os.environ.get("GOOGLE_CLOUD_PROJECT")
                    if os.environ.get("STORAGE_EMULATOR_HOST"):
                        from google.auth.credentials import AnonymousCredentials

                        self._client = storage.Client(
                            project=project or "local", credentials=AnonymousCredentials()
                        )
                    else:
                        self._client = storage.Client(project=project)
        return self._client

    @property
    def _bucket(self) -> Bucket:
        if self._bucket_handle is None:
            self._bucket_handle = self.client.bucket(self.bucket)
        return self._bucket_handle

    def _call_options(self) -> dict[str, Any]:
        """``retry`` and ``timeout`` for one call: transient failures retried within the budget."""
        from google.cloud.storage.retry import DEFAULT_RETRY

        connect = min(CONNECT_TIMEOUT_SECONDS, self.retry_budget)
        return {
            "retry": DEFAULT_RETRY.with_timeout(self.retry_budget),
            "timeout": (connect, READ_TIMEOUT_SECONDS),
        }

    def _errors(self) -> tuple[type[Exception], ...]:
        import requests
        from google.api_core.exceptions import GoogleAPIError
        from google.auth.exceptions import GoogleAuthError

        # GoogleAPIError covers the HTTP errors and RetryError (a retry budget ran out)
        return (GoogleAPIError, GoogleAuthError, requests.RequestException, ConnectionError)

    def _unavailable(self, exc: Exception) -> bool:
        """True for failures of the service rather than of the request: outages, throttling."""
        import requests
        from google.api_core import exceptions as api
        from google.auth.exceptions import TransportError

        outage = (api.RetryError, api.ServerError, api.TooManyRequests)
        transport = (requests.ConnectionError, requests.Timeout, TransportError, ConnectionError)
        return isinstance(exc, outage + transport)

    def _is_not_found(self, exc: Exception) -> bool:
        from google.api_core.exceptions import NotFound

        return isinstance(exc, NotFound)

    def _missing_bucket(self) -> StorageError:
        return StorageError(f"GCS bucket {self.bucket!r} does not exist ({self.base_url})")

    def _wrap(self, exc: Exception, action: str, key: str | None) -> StorageError:
        """Translate a client error into a ``StorageError`` naming the URL (never credentials)."""
        where = self._layout.url(key) if key is not None else self.base_url
        code = getattr(exc, "code", None)
        message = getattr(exc, "message", None) or str(exc)
        prefix = f"{code} " if isinstance(code, int) else ""
        if self._unavailable(exc):
            text = f"GCS unavailable: cannot {action} {where}: {prefix}{message}"
            return StorageUnavailable(text)
        return StorageError(f"cannot {action} {where}: {prefix}{message}")

    def _ensure_bucket(self) -> None:
        """Raise a clear ``StorageError`` if the bucket is missing (checked once, then cached)."""
        if self._bucket_checked:
            return
        try:
            # objects.list answers 404 for a missing bucket and needs only storage.objects.list
            pages: Any = self.client.list_blobs(self.bucket, max_results=1, **self._call_options())
            next(iter(pages.pages), None)
        except self._errors() as exc:
            if self._is_not_found(exc):
                raise self._missing_bucket() from exc
            raise self._wrap(exc, "check bucket of", None) from exc
        self._bucket_checked = True

    def _get_blob(self, key: str, action: str) -> Blob | None:
        name = self._layout.name(key)
        try:
            blob = self._bucket.get_blob(name, **self._call_options())
        except self._errors() as exc:
            raise self._wrap(exc, action, key) from exc
        if blob is None:
            self._ensure_bucket()
        return blob

    def _info(self, key: str, blob: Blob) -> ObjectInfo:
        return ObjectInfo(key=key, size=int(blob.size or 0), etag=blob.etag, updated=blob.updated)

    # -- contract ----------------------------------------------------------------------------

    def read(self, key: str) -> bytes:
        """Return the object's bytes; ``StorageNotFound`` if absent."""
        name = self._layout.name(key)
        try:
            data: bytes = self._bucket.blob(name).download_as_bytes(**self._call_options())
        except self._errors() as exc:
            if self._is_not_found(exc):
                self._ensure_bucket()
                raise StorageNotFound(f"no object at {self._layout.url(key)}") from exc
            raise self._wrap(exc, "read", key) from exc
        return data

    def open_read(self, key: str) -> BinaryIO:
        """Return ``blob.open('rb')`` for the object's current generation."""
        blob = self._get_blob(key, "read")
        if blob is None:
            raise StorageNotFound(f"no object at {self._layout.url(key)}")
        reader: BinaryIO = blob.open(
            "rb", chunk_size=self.chunk_size, retry=self._call_options()["retry"]
        )
        return reader

    def write(
        self, key: str, data: bytes | BinaryIO, *, content_type: str | None = None
    ) -> ObjectInfo:
        """Simple upload up to the threshold, else a chunked resumable upload.

        Either way the object only becomes visible when the upload is finalized.
        """
        name = self._layout.name(key)
        stream, size = as_stream(data)
        chunk = self.chunk_size if size > self.resumable_threshold else None
        if chunk and crashpoints.armed("mid_write"):
            stream = cast(BinaryIO, _CrashAfter(stream, chunk))
        blob = self._bucket.blob(name, chunk_size=chunk)
        try:
            blob.upload_from_file(
                stream,
                size=size,
                content_type=content_type or guess_content_type(key),
                **self._call_options(),
            )
        except self._errors() as exc:
            if self._is_not_found(exc):
                raise self._missing_bucket() from exc
            raise self._wrap(exc, "write", key) from exc
        except OSError as exc:
            raise StorageError(f"cannot write {self._layout.url(key)}: {exc}") from exc
        return self._info(key, blob)

    def create_if_absent(self, key: str, data: bytes) -> bool:
        """Upload with ``if_generation_match=0``; a 412 means the object already exists."""
        from google.api_core.exceptions import PreconditionFailed

        blob = self._bucket.blob(self._layout.name(key))
        try:
            blob.upload_from_string(
                data,
                content_type=guess_content_type(key),
                if_generation_match=0,
                **self._call_options(),
            )
        except PreconditionFailed:
            return False
        except self._errors() as exc:
            if self._is_not_found(exc):
                raise self._missing_bucket() from exc
            raise self._wrap(exc, "create", key) from exc
        return True

    def stat(self, key: str) -> ObjectInfo | None:
        """Object metadata, or None if absent (a missing bucket raises)."""
        blob = self._get_blob(key, "stat")
        return None if blob is None else self._info(key, blob)

    def exists(self, key: str) -> bool:
        """True if an object exists at the key."""
        return self.stat(key) is not None

    def list(
        self, prefix: str = "", *, start_after: str | None = None, limit: int | None = None
    ) -> Iterator[ObjectInfo]:
        """``objects.list`` under the root prefix; GCS returns names in lexicographic order.

        ``start_after`` becomes ``startOffset`` (which is inclusive, so the name itself is
        skipped); ``limit`` caps ``maxResults`` per page and the objects yielded.
        """
        full_prefix = self._layout.list_prefix(prefix)
        check_list_args(start_after, limit)
        args: dict[str, Any] = {"prefix": full_prefix}
        skip = None
        if start_after is not None:
            skip = self._layout.root + start_after
            args["start_offset"] = skip
        if limit is not None:
            args["page_size"] = min(limit + (skip is not None), LIST_PAGE_MAX)
        yielded = 0
        try:
            blobs: Any = self.client.list_blobs(self.bucket, **args, **self._call_options())
            for blob in blobs:
                key = self._layout.key_of(blob.name)
                if key is None or blob.name == skip:
                    continue
                yield self._info(key, blob)
                yielded += 1
                if limit is not None and yielded >= limit:
                    return
        except self._errors() as exc:
            if self._is_not_found(exc):
                raise self._missing_bucket() from exc
            raise self._wrap(exc, "list", None) from exc

    def delete(self, key: str) -> None:
        """Delete the object; an absent object is fine, an absent bucket raises."""
        blob = self._bucket.blob(self._layout.name(key))
        try:
            blob.delete(**self._call_options())
        except self._errors() as exc:
            if self._is_not_found(exc):
                self._ensure_bucket()
                return
            raise self._wrap(exc, "delete", key) from exc

    def url(self, key: str) -> str:
        """``gs://bucket/prefix/key``."""
        self._layout.name(key)
        return self._layout.url(key)


class _CrashAfter:
    """Fault-injection tests: a stream that SIGKILLs the process (``mid_write``) when read past
    its first ``limit`` bytes, i.e. with a resumable session open and its first chunk sent."""

    def __init__(self, stream: BinaryIO, limit: int) -> None:
        self._stream, self._limit = stream, limit

    def read(self, size: int = -1) -> bytes:
        if self._stream.tell() >= self._limit:
            crashpoints.crash_point("mid_write")
        return self._stream.read(size)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
