"""The preamble of a sync: the request, the destination, the pipeline's lease and its state.

:func:`open_sync` gives a :class:`SyncContext`; :func:`shared.run.plan.plan` and
:func:`shared.run.fetch.fetch_and_process` work with it (see :mod:`shared.run.engine`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from shared.errors import ConfigError, StorageError
from shared.run.lease import Lease
from shared.run.manifest import InputRecord, new_run_id
from shared.run.scope import scope_pipeline
from shared.run.state import SyncState, definition_hash
from shared.settings import runtime_settings
from shared.storage import layout, open_storage

if TYPE_CHECKING:
    from shared.config import Pipeline
    from shared.drive import DriveClient
    from shared.storage import Storage

LeaseFor = Callable[["Storage", str, str], Lease]  # (destination, pipeline, run id) -> lease
Progress = Callable[[InputRecord, int, int], None]  # (record, inputs done, inputs listed)


@dataclass(frozen=True)
class SyncRequest:
    """A Drive folder sync, with the overrides the caller chose.

    A ``folder_id`` other than the pipeline's (and not one of its ``alias_folder_ids``)
    scopes the request when it is made: ``pipeline`` becomes a copy that reads that folder
    and writes under ``<destination>/_folders/<folder id>/``, with its own state
    (:mod:`shared.run.scope`). No path through the engine can write such a run over the
    pipeline's own outputs.
    """

    pipeline: Pipeline
    trigger: str = "cli"
    folder_id: str | None = None
    since: datetime | None = None
    full_refresh: bool = False
    dry_run: bool = False
    # Apply removals even past the pipeline's removal guard (mirror.max_removed...).
    force_removals: bool = False
    # Why this run lists less than the pipeline's folder (the CLI's --include / --exclude on a
    # configured pipeline): like a since run, it computes no removals and keeps no feed position.
    listing_narrowed: str | None = None
    # Save the state after this many processed inputs and/or seconds (None: the runtime
    # settings, DRIVEPIPE_CHECKPOINT_EVERY / DRIVEPIPE_CHECKPOINT_SECONDS, else every 10 s).
    checkpoint_every: int | None = None
    checkpoint_seconds: float | None = None
    # Wait this long for another sync of the pipeline to finish before refusing (LeaseHeld).
    lock_wait_seconds: float = 0.0

    # The pipeline as configured, when this request was scoped to another folder's prefix.
    unscoped: Pipeline | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        scoped = scope_pipeline(self.pipeline, self.folder_id)
        if scoped is not self.pipeline:  # frozen: set once, here
            object.__setattr__(self, "unscoped", self.unscoped or self.pipeline)
            object.__setattr__(self, "pipeline", scoped)

    @property
    def scope_note(self) -> str | None:
        """What the manifest says of a scoped run: whose folder, and where it went."""
        if self.unscoped is None:
            return None
        return (
            f"folder {self.folder_id} is not pipeline {self.unscoped.name}'s folder: synced "
            f"with its own state and outputs under {self.pipeline.output.url}"
        )

    @property
    def source_folder(self) -> str:
        """The folder to sync: the request's ``folder_id``, else the pipeline's."""
        folder = self.folder_id or self.pipeline.source.folder_id
        if not folder:
            raise ConfigError(f"pipelines.{self.pipeline.name}.source.folder_id is not set")
        return folder


@dataclass
class SyncContext:
    """What a sync works with once :func:`open_sync` has run its preamble."""

    request: SyncRequest
    folder: str  # the Drive folder to list
    drive: DriveClient
    dest: Storage
    run_id: str
    state: SyncState
    lease: Lease | None  # None for a dry run
    drive_baseline: tuple[int, int] = (0, 0)  # the client's (requests, retries) at the start

    def drive_usage(self) -> dict[str, int]:
        """The Drive requests and retries this run made (the client may serve several runs)."""
        requests, retries = self.drive_baseline
        stats = self.drive.stats
        return {"requests": stats.requests - requests, "retries": stats.total_retries - retries}

    def hold_inline(self) -> None:
        """Hold the lease as an inline sync does: its TTL, renewed in the background."""
        if self.lease is None:
            return
        ttl = runtime_settings().lease_seconds
        if self.lease.ttl != ttl:  # taken with a fanned-out run's TTL
            self.lease.ttl = ttl
            self.lease.renew()  # LeaseLost if another sync took over meanwhile
        self.lease.start_renewing()

    def release(self) -> None:
        """Release the lease (idempotent)."""
        if self.lease is not None:
            self.lease.release()


def open_store(url: str, role: str) -> Storage:
    """Open ``url``; a failure says which store (``destination``, ``source``) is unreachable."""
    try:
        return open_storage(url)
    except StorageError as exc:
        raise StorageError(f"{role} {url} is not reachable: {exc}") from exc


def sync_lease(
    dest: Storage,
    pipeline: str,
    run_id: str | None = None,
    *,
    ttl: float | None = None,
    holder: str | None = None,
) -> Lease:
    """The lease that lets one sync of ``pipeline`` at a time write to ``dest``.

    Inline syncs hold it while they run; a fanned-out run holds it (as ``holder``, with a long
    ``ttl``) from planning until its finalizer releases it.
    """
    ttl = ttl or runtime_settings().lease_seconds
    return Lease(dest, layout.sync_lock(pipeline), ttl=ttl, holder=holder, run_id=run_id)


def open_sync(
    request: SyncRequest,
    *,
    drive: DriveClient | None = None,
    lease_for: LeaseFor = sync_lease,
    renew: bool = True,
) -> SyncContext:
    """The preamble: take the pipeline's sync lease (``lease_for``) and read its state.

    ``renew`` holds the lease as an inline sync does from the start. A dry run takes no lease.
    The caller releases the lease (:meth:`SyncContext.release`) when it is done with it.
    """
    pipeline = request.pipeline
    folder = request.source_folder  # ConfigError before any connection
    if drive is None:
        from shared.drive import DriveClient
        from shared.secrets import load_into_env

        load_into_env()  # DRIVE_SECRET_ARN on Lambda; a no-op elsewhere
        drive = DriveClient.from_env()
    baseline = (drive.stats.requests, drive.stats.total_retries)
    dest = open_store(pipeline.output.url, "destination")
    run_id = new_run_id()
    lease = None
    if not request.dry_run:
        lease = lease_for(dest, pipeline.name, run_id)
        try:
            lease.acquire(wait=request.lock_wait_seconds)
        except StorageError as exc:
            raise StorageError(f"cannot take the sync lease in {dest.base_url}: {exc}") from exc
    try:
        if lease is not None and renew:
            lease.start_renewing()
        state = _load_state(dest, pipeline)
    except BaseException:
        if lease is not None:
            lease.release()
        raise
    return SyncContext(request, folder, drive, dest, run_id, state, lease, baseline)


def _load_state(dest: Storage, pipeline: Pipeline) -> SyncState:
    try:
        return SyncState.load(dest, pipeline.name, definition_hash(pipeline))
    except StorageError as exc:
        raise StorageError(f"cannot read state from {dest.base_url}: {exc}") from exc
