"""DriveClient: the public face of the Drive API v3 client (walk, fetch, changes feed)."""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import datetime
from typing import IO, Any

from shared.drive.auth import DriveAuth, auth_from_env, mask_secrets
from shared.drive.changes import ChangesFeed
from shared.drive.download import CHUNK_SIZE, export_mime, fetch_file
from shared.drive.filters import FileFilter
from shared.drive.http import DriveHttp, Timeout
from shared.drive.inflight import RequestSlots
from shared.drive.listing import ITEM_FIELDS, TreeWalker
from shared.drive.models import ChangesPage, ClientStats, DriveFile, FetchResult
from shared.drive.retry import RetryPolicy
from shared.drive.throttle import AdaptiveRateLimiter
from shared.drive.watch import ChannelsApi, OpenedChannel
from shared.errors import DriveError

DEFAULT_BASE_URL = "https://www.googleapis.com/drive/v3"
# Requests in flight (listing and downloads together, see ``limited``): chosen against the
# emulator's quota fault with the adaptive limiter on (docs/performance.md, "Listing and
# downloading at once").
DEFAULT_CONCURRENCY = 16
DEFAULT_TIMEOUT: Timeout = (10.0, 60.0)  # (connect, read) seconds


class DriveClient:
    """Lists Drive folders and downloads their files, in parallel, retried and verified.

    ``adaptive_backoff`` (default on) shares one AIMD rate limiter between all threads: a
    rate-limit answer slows the whole client down, successes speed it up again. ``max_qps``
    caps requests per second from the start (Drive's quota is about 200/s per user).
    ``batch_folders`` (default on) lists several folders per files.list query, repairing
    partial answers (see shared.drive.listing); off, every folder gets its own queries.
    """

    def __init__(
        self,
        auth: DriveAuth,
        *,
        base_url: str = DEFAULT_BASE_URL,
        concurrency: int = DEFAULT_CONCURRENCY,
        retry: RetryPolicy | None = None,
        timeout: Timeout = DEFAULT_TIMEOUT,
        chunk_size: int = CHUNK_SIZE,
        sleep: Callable[[float], None] = time.sleep,
        seed: int | None = None,
        adaptive_backoff: bool = True,
        max_qps: float | None = None,
        batch_folders: bool = True,
    ):
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.limiter: AdaptiveRateLimiter | None = None
        if adaptive_backoff:
            self.limiter = AdaptiveRateLimiter(max_rate=max_qps)
        elif max_qps is not None:
            raise ValueError("max_qps needs adaptive_backoff=True")
        self.concurrency = concurrency
        self.batch_folders = batch_folders
        self.chunk_size = chunk_size
        self.stats = ClientStats()
        # Listing requests are small and latency-bound: walks use twice the threads.
        self.walk_workers = 2 * concurrency
        # walk and fetch_many may run side by side: room for both pools' connections.
        self._http = DriveHttp(
            base_url,
            auth,
            retry=retry or RetryPolicy(),
            timeout=timeout,
            pool_size=self.walk_workers + concurrency + 2,
            stats=self.stats,
            sleep=sleep,
            seed=seed,
            limiter=self.limiter,
        )
        self._feed = ChangesFeed(self._http)
        self._channels = ChannelsApi(self._http)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> DriveClient:
        """Build a client from DRIVE_API_URL and credentials in ``env`` (default os.environ).

        Credentials: DRIVE_ACCESS_TOKEN, DRIVE_SERVICE_ACCOUNT_JSON, GOOGLE_APPLICATION_CREDENTIALS
        or DRIVE_API_KEY (first one set wins). ``overrides`` go to the constructor
        (``auth=`` replaces the credentials from the environment).
        """
        env = os.environ if env is None else env
        auth = overrides.pop("auth", None) or auth_from_env(env)
        base_url = overrides.pop("base_url", None) or env.get("DRIVE_API_URL") or DEFAULT_BASE_URL
        return cls(auth, base_url=base_url, **overrides)

    @property
    def base_url(self) -> str:
        """The Drive API base URL this client talks to."""
        return self._http.base_url

    def close(self) -> None:
        """Release pooled connections."""
        self._http.close()

    def __enter__(self) -> DriveClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DriveClient(base_url={mask_secrets(self.base_url)!r}, auth={self._http.auth!r})"

    @property
    def slots(self) -> RequestSlots | None:
        """The bound on requests in flight (see :meth:`limited`); ``None``: unbounded."""
        return self._http.slots

    def limited(self, max_in_flight: int) -> DriveClient:
        """This client with at most ``max_in_flight`` requests in flight, all kinds together.

        Listing (``walk``, on ``2 × max_in_flight`` threads) and downloads share the bound, and
        listing requests take a free slot first (:mod:`shared.drive.inflight`). The view shares
        this client's connections, rate limiter and stats; closing either closes both.
        """
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        view = copy.copy(self)
        view.concurrency = max_in_flight
        view.walk_workers = 2 * max_in_flight
        view._http = self._http.bounded(RequestSlots(max_in_flight))
        view._feed = ChangesFeed(view._http)
        return view

    def walk(
        self,
        folder_id: str,
        *,
        include: Iterable[str] = (),
        exclude: Iterable[str] = (),
        mime_types: Iterable[str] | None = None,
        modified_since: datetime | None = None,
        drive_id: str | None = None,
        folders: dict[str, str] | None = None,
    ) -> Iterator[DriveFile]:
        """Yield every file under ``folder_id`` that passes the filters, with unique paths.

        ``folders``, when given, receives every folder id walked, mapped to its path (the root
        ``""``), once the walk has ended: the changes feed filters and places changes by these.

        Globs match the whole relative path (``**`` crosses folders); ``mime_types`` takes
        MIME types or format names (csv, tsv, xlsx, xls, json, jsonl, parquet, gsheet).
        Files that cannot be fetched are still yielded, with ``skip_reason`` set.
        ``drive_id`` (shared drive) is read from the root folder when not given. Folders in
        the same name collision group are all tagged (``name~1a2b3c4d``), like files; with
        ``modified_since`` only changed files are listed, so a collision with an unchanged file
        goes unseen and the changed one keeps its plain name.
        Files are yielded folder by folder as listings complete (not in a sorted order).
        """
        filters = FileFilter.build(include, exclude, mime_types, modified_since)
        walker = TreeWalker(self._http, filters, drive_id=drive_id)
        walker.batching = self.batch_folders
        yield from walker.walk(folder_id, workers=self.walk_workers)
        if folders is not None:
            folders.update(walker.folder_paths)

    # ---- changes feed (see shared.drive.changes) -------------------------------------------
    def start_page_token(self, drive_id: str | None = None) -> str:
        """changes.getStartPageToken: the token for "now" (of one shared drive with ``drive_id``).

        Take it *before* a full walk, so nothing that changes during the walk is missed.
        """
        return self._feed.start_page_token(drive_id)

    def changes(
        self, token: str, *, drive_id: str | None = None, include_removed: bool = True
    ) -> ChangesPage:
        """Every change since ``token``, following nextPageToken to the end.

        One change per file (its latest state), in feed order; ``new_start_page_token`` is the
        token to store for next time. Raises ChangesTokenInvalid if Drive refuses ``token``,
        and any other DriveError part-way: a partial feed is never returned.
        """
        return self._feed.read_all(token, drive_id=drive_id, include_removed=include_removed)

    def iter_changes(
        self, token: str, *, drive_id: str | None = None, include_removed: bool = True
    ) -> Iterator[ChangesPage]:
        """The feed page by page (bounded memory); the last page has new_start_page_token."""
        return self._feed.pages(token, drive_id=drive_id, include_removed=include_removed)

    # ---- push notifications (see shared.drive.watch) --------------------------------------
    def watch_changes(
        self,
        *,
        channel_id: str,
        address: str,
        token: str,
        expiration_ms: int,
        page_token: str,
        drive_id: str | None = None,
    ) -> OpenedChannel:
        """changes.watch: open a notification channel to ``address`` (see shared.drive.watch)."""
        return self._channels.watch_changes(
            channel_id=channel_id,
            address=address,
            token=token,
            expiration_ms=expiration_ms,
            page_token=page_token,
            drive_id=drive_id,
        )

    def stop_channel(self, channel_id: str, resource_id: str) -> bool:
        """channels.stop; False when Drive no longer knows the channel."""
        return self._channels.stop(channel_id, resource_id)

    def get_file(self, file_id: str, fields: str = ITEM_FIELDS) -> dict[str, Any]:
        """files.get metadata (``fields`` mask) of one item, e.g. a parent not seen before."""
        return self._feed.get_file(file_id, fields)

    def fetch(self, file: DriveFile, dest: IO[bytes], *, sheet_format: str = "csv") -> FetchResult:
        """Write ``file``'s bytes to the seekable ``dest`` (Sheets exported as csv or xlsx).

        Retries rewind ``dest`` to its position on entry and truncate it there.
        """
        return fetch_file(
            self._http, file, dest, sheet_format=sheet_format, chunk_size=self.chunk_size
        )

    def fetch_many(
        self,
        files: Iterable[DriveFile],
        open_dest: Callable[[DriveFile], IO[bytes]],
        *,
        concurrency: int | None = None,
        sheet_format: str = "csv",
    ) -> Iterator[tuple[DriveFile, FetchResult | DriveError]]:
        """Fetch ``files`` in parallel, yielding ``(file, result or error)`` as each completes.

        ``open_dest(file)`` is called in a worker thread and must return a new seekable binary
        stream; fetch_many closes it afterwards. Skipped files are reported without a request
        or a destination. ``files`` is consumed lazily, so it can be a running ``walk``.
        """
        export_mime(sheet_format)  # fail fast on a bad format, before any request
        workers = concurrency or self.concurrency
        self._http.ensure_pool(workers + self.walk_workers + 2)  # a walk may run alongside
        source = iter(files)
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="drive-fetch")
        pending: dict[Future[FetchResult | DriveError], DriveFile] = {}

        def top_up() -> None:
            while len(pending) < 2 * workers:
                file = next(source, None)
                if file is None:
                    return
                pending[pool.submit(self._fetch_one, file, open_dest, sheet_format)] = file

        try:
            top_up()
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield pending.pop(future), future.result()
                top_up()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def fetch_into(
        self, file: DriveFile, open_dest: Callable[[DriveFile], IO[bytes]], sheet_format: str
    ) -> FetchResult | DriveError:
        """One file of :meth:`fetch_many`: ``open_dest(file)``, fetch into it, close it.

        Drive and local I/O failures are returned, not raised.
        """
        return self._fetch_one(file, open_dest, sheet_format)

    def _fetch_one(
        self, file: DriveFile, open_dest: Callable[[DriveFile], IO[bytes]], sheet_format: str
    ) -> FetchResult | DriveError:
        if file.skip_reason:
            return DriveError(f"{file.path}: {file.skip_reason}", reason="notDownloadable")
        try:
            dest = open_dest(file)
        except OSError as exc:
            return DriveError(f"{file.path}: cannot open destination: {exc}", reason="localIO")
        try:
            return self.fetch(file, dest, sheet_format=sheet_format)
        except DriveError as exc:
            return exc
        except OSError as exc:
            return DriveError(f"{file.path}: cannot write destination: {exc}", reason="localIO")
        finally:
            dest.close()
