"""S3 backend. Honours AWS_ENDPOINT_URL (e.g. moto_server) and AWS_REGION / AWS_DEFAULT_REGION.

boto3 is imported lazily, on first use, so ``import shared.storage`` stays cheap on cold start.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, BinaryIO

from shared import crashpoints
from shared.errors import StorageError, StorageNotFound
from shared.storage._bucket import BucketLayout, as_stream
from shared.storage.base import LIST_PAGE_MAX, ObjectInfo, check_list_args, guess_content_type

if TYPE_CHECKING:
    from botocore.client import BaseClient

MIB = 1024 * 1024
DEFAULT_MULTIPART_THRESHOLD = 8 * MIB
MIN_PART_SIZE = 5 * MIB  # S3's minimum size of every part but the last
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_CONFLICT_RETRIES = 4
AWS_CREDENTIAL_HELP = (
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run with an IAM role"
)


# Env vars that change which credentials/endpoint a boto3 session resolves.
_SESSION_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
)
_sessions: dict[str, Any] = {}
_clients: dict[tuple[str, str, int], BaseClient] = {}
_sessions_lock = threading.Lock()


def _region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def _new_client(max_pool_connections: int) -> BaseClient:
    """An S3 client shared per credential/endpoint environment, region and pool size.

    A fresh session re-parses botocore's service models (~0.5 s) and even a client from a
    shared session costs tens of ms, which a storage object per event record would pay many
    times over; boto3 clients are thread-safe, so one per environment serves every storage.
    Sessions are not thread-safe, hence the lock around creation.
    """
    import boto3
    from botocore.config import Config

    fingerprint = "\0".join(os.environ.get(name, "") for name in _SESSION_ENV)
    cache_key = hashlib.sha256(fingerprint.encode()).hexdigest()  # no secrets kept as keys
    client_key = (cache_key, _region(), max_pool_connections)
    with _sessions_lock:
        client = _clients.get(client_key)
        if client is None:
            session = _sessions.get(cache_key)
            if session is None:
                session = _sessions[cache_key] = boto3.session.Session()
            config = Config(retries={"mode": "standard"}, max_pool_connections=max_pool_connections)
            client = _clients[client_key] = session.client(
                "s3", region_name=_region(), config=config
            )
    return client


class S3Storage:
    """A ``Storage`` over ``s3://bucket/prefix``; one lazily created, thread-safe client."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
        multipart_chunksize: int | None = None,
        max_pool_connections: int = 16,
        client: BaseClient | None = None,
    ) -> None:
        self._layout = BucketLayout("s3", bucket, prefix)
        self.bucket = bucket
        self.base_url = self._layout.base_url
        self.multipart_threshold = max(multipart_threshold, 1)
        self.multipart_chunksize = max(
            multipart_chunksize or self.multipart_threshold, MIN_PART_SIZE
        )
        self._max_pool_connections = max_pool_connections
        self._client = client
        self._client_lock = threading.Lock()
        self._bucket_checked = False

    def __repr__(self) -> str:
        return f"S3Storage({self.base_url!r})"

    # -- plumbing ----------------------------------------------------------------------------

    @property
    def client(self) -> BaseClient:
        """The boto3 S3 client, created on first use from the environment."""
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    self._client = _new_client(self._max_pool_connections)
        return self._client

    def _wrap(self, exc: Exception, action: str, key: str | None) -> StorageError:
        """Translate a boto3 error into a ``StorageError`` naming the URL (never credentials)."""
        where = self._layout.url(key) if key is not None else self.base_url
        response = getattr(exc, "response", None)
        if isinstance(response, dict):
            error = response.get("Error", {})
            code = str(error.get("Code", "?"))
            message = error.get("Message", "")
            if code == "NoSuchBucket":
                return StorageError(
                    f"S3 bucket {self.bucket!r} does not exist (cannot {action} {where})"
                )
            if code in _NOT_FOUND_CODES and key is not None:
                return StorageNotFound(f"no object at {where}")
            return StorageError(f"cannot {action} {where}: {code} {message}".rstrip())
        from botocore.exceptions import NoCredentialsError, PartialCredentialsError

        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            return StorageError(f"cannot {action} {where}: {exc}; {AWS_CREDENTIAL_HELP}")
        return StorageError(f"cannot {action} {where}: {exc}")

    def _errors(self) -> tuple[type[Exception], ...]:
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError

        return (ClientError, BotoCoreError, Boto3Error)

    def _ensure_bucket(self) -> None:
        """Raise a clear ``StorageError`` if the bucket is missing (checked once, then cached)."""
        if self._bucket_checked:
            return
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except self._errors() as exc:
            status = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if status in ("404", "NoSuchBucket", "NotFound"):
                raise StorageError(
                    f"S3 bucket {self.bucket!r} does not exist ({self.base_url})"
                ) from exc
            raise self._wrap(exc, "check bucket of", None) from exc
        self._bucket_checked = True

    def _not_found(self, key: str) -> StorageNotFound:
        self._ensure_bucket()
        return StorageNotFound(f"no object at {self._layout.url(key)}")

    # -- contract ----------------------------------------------------------------------------

    def read(self, key: str) -> bytes:
        """Return the object's bytes; ``StorageNotFound`` if absent."""
        with self.open_read(key) as body:
            try:
                return body.read()
            except self._errors() as exc:
                raise self._wrap(exc, "read", key) from exc

    def open_read(self, key: str) -> BinaryIO:
        """Return the object's ``StreamingBody`` (an ``io.IOBase``)."""
        name = self._layout.name(key)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=name)
        except self._errors() as exc:
            error = self._wrap(exc, "read", key)
            if isinstance(error, StorageNotFound):
                raise self._not_found(key) from exc
            raise error from exc
        body: BinaryIO = response["Body"]
        return body

    def write(
        self, key: str, data: bytes | BinaryIO, *, content_type: str | None = None
    ) -> ObjectInfo:
        """One PutObject up to the threshold, else a managed multipart upload (aborted on error)."""
        name = self._layout.name(key)
        stream, size = as_stream(data)
        content_type = content_type or guess_content_type(key)
        try:
            if size <= self.multipart_threshold:
                self.client.put_object(
                    Bucket=self.bucket, Key=name, Body=stream, ContentType=content_type
                )
            else:
                from boto3.s3.transfer import TransferConfig

                transfer = TransferConfig(
                    multipart_threshold=self.multipart_threshold,
                    multipart_chunksize=self.multipart_chunksize,
                )
                self.client.upload_fileobj(
                    stream,
                    self.bucket,
                    name,
                    ExtraArgs={"ContentType": content_type},
                    Config=transfer,
                    Callback=_crash_mid_upload if crashpoints.armed("mid_write") else None,
                )
        except self._errors() as exc:
            raise self._wrap(exc, "write", key) from exc
        except OSError as exc:
            raise StorageError(f"cannot write {self._layout.url(key)}: {exc}") from exc
        info = self.stat(key)
        if info is None:
            raise StorageError(f"object vanished right after writing {self._layout.url(key)}")
        return info

    def create_if_absent(self, key: str, data: bytes) -> bool:
        """``PutObject`` with ``If-None-Match: *``; 412 means it exists, 409 is retried."""
        name = self._layout.name(key)
        for attempt in range(_CONFLICT_RETRIES):
            try:
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=name,
                    Body=data,
                    ContentType=guess_content_type(key),
                    IfNoneMatch="*",
                )
                return True
            except self._errors() as exc:
                code = getattr(exc, "response", {}).get("Error", {}).get("Code")
                if code == "PreconditionFailed":
                    return False
                if code == "ConditionalRequestConflict" and attempt + 1 < _CONFLICT_RETRIES:
                    time.sleep(0.05 * 2**attempt)
                    continue
                raise self._wrap(exc, "create", key) from exc
        raise StorageError(f"cannot create {self._layout.url(key)}: conflicting writers")

    def stat(self, key: str) -> ObjectInfo | None:
        """``HeadObject``; None if absent (a missing bucket raises)."""
        name = self._layout.name(key)
        try:
            head: dict[str, Any] = self.client.head_object(Bucket=self.bucket, Key=name)
        except self._errors() as exc:
            error = self._wrap(exc, "stat", key)
            if isinstance(error, StorageNotFound):
                self._ensure_bucket()
                return None
            raise error from exc
        return ObjectInfo(
            key=key,
            size=int(head["ContentLength"]),
            etag=str(head.get("ETag", "")).strip('"') or None,
            updated=head.get("LastModified"),
        )

    def exists(self, key: str) -> bool:
        """True if an object exists at the key."""
        return self.stat(key) is not None

    def list(
        self, prefix: str = "", *, start_after: str | None = None, limit: int | None = None
    ) -> Iterator[ObjectInfo]:
        """``ListObjectsV2`` under the root prefix; S3 returns keys in UTF-8 byte order.

        ``start_after`` is S3's ``StartAfter`` (exclusive); ``limit`` caps ``MaxKeys``.
        """
        full_prefix = self._layout.list_prefix(prefix)
        check_list_args(start_after, limit)
        args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": full_prefix}
        if start_after is not None:
            args["StartAfter"] = self._layout.root + start_after
        if limit is not None:
            args["PaginationConfig"] = {
                "MaxItems": limit,
                "PageSize": min(limit, LIST_PAGE_MAX),
            }
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(**args)
            for page in pages:
                for item in page.get("Contents", []):
                    key = self._layout.key_of(item["Key"])
                    if key is None:
                        continue
                    yield ObjectInfo(
                        key=key,
                        size=int(item["Size"]),
                        etag=str(item.get("ETag", "")).strip('"') or None,
                        updated=item.get("LastModified"),
                    )
        except self._errors() as exc:
            raise self._wrap(exc, "list", None) from exc

    def delete(self, key: str) -> None:
        """``DeleteObject``; S3 answers 204 for an absent key too."""
        name = self._layout.name(key)
        try:
            self.client.delete_object(Bucket=self.bucket, Key=name)
        except self._errors() as exc:
            raise self._wrap(exc, "delete", key) from exc

    def url(self, key: str) -> str:
        """``s3://bucket/prefix/key``."""
        self._layout.name(key)
        return self._layout.url(key)


def _crash_mid_upload(_sent: int) -> None:
    """Fault-injection tests: SIGKILL with a multipart upload open (parts sent, none completed)."""
    crashpoints.crash_point("mid_write")
