"""Listing and downloading at once: a sync's downloads start while its folder is still listed.

A sync cannot decide a file's fate before the listing is complete: moves and removals pair the
whole listing with the state (:func:`shared.run.mirror.reconcile`), and a file's output key can
be disputed by any other listed name that sanitises to the same key or a folder of it, in any
folder (:mod:`shared.run.ownership`). What it can do early is *download*: that writes nothing
to the destination. So the split is

* **while listing**: each file the walk yields that the plan will certainly fetch
  (:func:`fetch_predictor`: supported, and new or changed under its own state key) is
  downloaded, verified, into the sync's scratch directory, up to ``DRIVEPIPE_PREFETCH_MB``;
* **once listed**: :func:`shared.run.plan.plan` decides everything exactly as before (skips,
  moves, removals, output keys), the mirror is applied, and only then are inputs processed and
  written, in arrival order; the early downloads are used, the rest fetched in the same pool,
  running ahead of processing by up to the same budget (at least ``2 × concurrency`` files).

A fan-out worker's item is fetched the same way (no listing: its downloads simply run ahead of
its processing).

A walk that fails part-way raises out of the plan as before: the early downloads are dropped
with the scratch directory and nothing reaches the destination. An early download the plan
does not fetch after all (an input that ownership leaves without an output key) is cancelled
or deleted unused. Listing and downloads send through one
:class:`~shared.drive.inflight.RequestSlots` of the pipeline's ``concurrency``, listing first.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from functools import partial
from queue import SimpleQueue
from typing import IO, TYPE_CHECKING, Any, cast

from shared.log import get_logger
from shared.run.fetch import scratch_file
from shared.run.mirror import key_id, state_key
from shared.run.plan import input_format
from shared.settings import runtime_settings

if TYPE_CHECKING:
    from shared.config import Pipeline
    from shared.drive import DriveClient, DriveFile, FetchResult
    from shared.errors import DriveError
    from shared.run.context import SyncContext

log = get_logger("pipeline")
MB = 1_000_000
UNKNOWN_SIZE = 10 * MB  # a Sheets export has no size before it is made: Drive's export cap


def fetch_predictor(ctx: SyncContext) -> Callable[[DriveFile], bool]:
    """True for a listed file that :func:`~shared.run.plan.plan` will put in ``to_fetch``.

    Conservative: a file whose Drive id the state knows under another path may be a move
    (outputs moved storage-side, no download), which only the whole listing tells, so it
    waits. A dry run fetches nothing.
    """
    request, pipeline, state = ctx.request, ctx.request.pipeline, ctx.state
    known_ids = {key_id(key) for key in state.inputs}

    def will_fetch(file: DriveFile) -> bool:
        if request.dry_run or file.skip_reason or input_format(file, pipeline) is None:
            return False
        if request.full_refresh:
            return True
        key = state_key(file)
        if key in state.inputs:  # never a move: changed or not, under its own entry
            return not state.is_unchanged(
                key, md5=file.md5, modified_time=file.modified_time, size=file.size
            )
        return file.id not in known_ids

    return will_fetch


class Downloads:
    """The downloads of one sync or work item: one bounded pool into one scratch directory.

    ``drive`` is the caller's client limited to ``concurrency`` requests in flight
    (:meth:`DriveClient.limited`); every request of the sync should go through it.
    :meth:`offer` starts an early download; :meth:`fetch_many` is what
    :func:`shared.run.fetch.fetch_and_process` fetches with (``fetch=``, ``scratch=``).
    Use as a context manager: leaving it stops the pool and removes the scratch directory.
    """

    def __init__(
        self,
        drive: DriveClient,
        *,
        concurrency: int,
        sheet_format: str = "csv",
        wanted: Callable[[DriveFile], bool] | None = None,
        budget_bytes: int | None = None,
        scratch: str | None = None,
    ):
        self.drive = drive.limited(concurrency)
        self.workers = concurrency
        self.sheet_format = sheet_format
        self.wanted = wanted
        if budget_bytes is None:
            budget_bytes = int(runtime_settings().prefetch_mb * MB)
        self.budget_bytes = budget_bytes
        self.early_fetches = 0  # downloads started while listing
        self.early_unused = 0  # ... that the plan did not fetch after all
        self._stack = ExitStack()
        self.scratch = scratch or self._stack.enter_context(
            tempfile.TemporaryDirectory(prefix="drivepipe-")
        )
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="drive-fetch")
        self._stack.callback(self._pool.shutdown, wait=True, cancel_futures=True)
        self._early: dict[DriveFile, Future[FetchResult | DriveError]] = {}
        self._ahead = 0  # bytes downloaded or downloading, not yet handed over to processing

    @classmethod
    def for_pipeline(cls, drive: DriveClient, pipeline: Pipeline, **options: Any) -> Downloads:
        """Downloads at the pipeline's ``concurrency`` and Sheets export format."""
        return cls(
            drive,
            concurrency=pipeline.concurrency,
            sheet_format=pipeline.read.sheets_export,
            **options,
        )

    def __enter__(self) -> Downloads:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the pool (queued downloads are cancelled) and remove the scratch directory."""
        self._early.clear()
        self._stack.close()

    def listing(self) -> DriveClient:
        """The bounded client, but each file its ``walk`` yields is offered (:meth:`offer`)."""
        return cast("DriveClient", _ListingDrive(self))

    def planning(self, ctx: SyncContext) -> SyncContext:
        """``ctx`` for :func:`~shared.run.plan.plan`: its walk starts early downloads."""
        return dataclasses.replace(ctx, drive=self.listing())

    def offer(self, file: DriveFile) -> bool:
        """Start downloading ``file`` now if it is wanted and fits the budget; True if started."""
        if file in self._early or (self.wanted is not None and not self.wanted(file)):
            return False
        size = _size(file)
        if self._ahead + size > self.budget_bytes:
            return False
        self._ahead += size
        self._early[file] = self._pool.submit(
            self.drive.fetch_into, file, self.open_scratch, self.sheet_format
        )
        self.early_fetches += 1
        return True

    def open_scratch(self, file: DriveFile) -> IO[bytes]:
        """A new file for ``file``'s bytes in the scratch directory (:func:`scratch_file`)."""
        return open(scratch_file(self.scratch, file), "w+b")

    def fetch_many(
        self,
        files: Iterable[DriveFile],
        open_dest: Callable[[DriveFile], IO[bytes]],
        *,
        concurrency: int | None = None,
        sheet_format: str | None = None,
    ) -> Iterator[tuple[DriveFile, FetchResult | DriveError]]:
        """Yield ``(file, result or error)`` for ``files`` as each download completes.

        Early downloads of ``files`` are used as they are (in the scratch directory); early
        downloads of other files are dropped. The others start into ``open_dest`` as far ahead
        of the consumer as the budget allows, and at least ``2 × concurrency`` files ahead
        whatever their size. ``concurrency`` is ignored: the pool is sized already.
        """
        wanted = list(files)
        self._drop_early(set(wanted))
        # Completed futures arrive on a queue: waiting on thousands of early downloads with
        # concurrent.futures.wait would cost O(pending) per completion.
        done: SimpleQueue[Future[FetchResult | DriveError]] = SimpleQueue()
        pending: dict[Future[FetchResult | DriveError], DriveFile] = {}
        for file in wanted:
            future = self._early.pop(file, None)
            if future is not None:
                pending[future] = file
                future.add_done_callback(done.put)
        early = set(pending.values())
        queue = deque(file for file in wanted if file not in early)
        fmt = sheet_format or self.sheet_format
        started = 0  # downloads started here and not yet handed over

        def top_up() -> None:
            nonlocal started
            while queue:
                size = _size(queue[0])
                if started >= 2 * self.workers and self._ahead + size > self.budget_bytes:
                    return
                file = queue.popleft()
                self._ahead += size
                started += 1
                future = self._pool.submit(self.drive.fetch_into, file, open_dest, fmt)
                pending[future] = file
                future.add_done_callback(done.put)

        top_up()
        while pending:
            future = done.get()
            file = pending.pop(future)
            self._ahead -= _size(file)
            if file not in early:
                started -= 1
            yield file, future.result()
            top_up()

    def _drop_early(self, keep: set[DriveFile]) -> None:
        """Cancel or delete the early downloads of files not in ``keep``."""
        for file in [f for f in self._early if f not in keep]:
            future = self._early.pop(file)
            self.early_unused += 1
            self._ahead -= _size(file)
            if not future.cancel():  # already running: delete what it downloads
                future.add_done_callback(partial(self._remove, file))

    def _remove(self, file: DriveFile, _: object = None) -> None:
        path = scratch_file(self.scratch, file)
        if os.path.exists(path):
            os.remove(path)


def _size(file: DriveFile) -> int:
    return file.size if file.size is not None else UNKNOWN_SIZE


class _ListingDrive:
    """The sync's client for planning: each file its walk yields is offered for download."""

    def __init__(self, downloads: Downloads):
        self._downloads = downloads
        self._drive = downloads.drive

    def walk(self, folder_id: str, **options: Any) -> Iterator[DriveFile]:
        offered = 0
        for file in self._drive.walk(folder_id, **options):
            offered += self._downloads.offer(file)
            yield file
        log.debug("listing done", extra={"early_downloads": offered})

    def __getattr__(self, name: str) -> Any:
        return getattr(self._drive, name)
