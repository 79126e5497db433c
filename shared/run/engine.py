"""The one sync engine: the steps every Drive folder sync runs, inline or fanned out.

1. :func:`open_sync`: the preamble. The folder to sync, a Drive client, the destination, a run
   id, the pipeline's sync lease (not for a dry run) and the state read under it.
2. :func:`plan`: list the folder once and decide each file's fate (unsupported, unchanged,
   failed before and unchanged, or to fetch), in a manifest.
3. :func:`fetch_and_process`: fetch the files to fetch in parallel and process each as it
   arrives, yielding what became of it and the state entry to record (``None``: forget it).

:func:`shared.run.sync.run_planned` applies those results to the state inline, saving it at
checkpoints; a fan-out worker (:mod:`shared.run.fanout.worker`) collects them into its item
result instead, and the finalizer merges them.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, BinaryIO, NamedTuple

from shared.errors import ConfigError, DriveError, StorageError
from shared.log import get_logger
from shared.run.lease import Lease
from shared.run.manifest import InputRecord, RunManifest, input_record, new_run_id, utc_now
from shared.run.ownership import claim_outputs
from shared.run.state import InputState, SyncState, definition_hash
from shared.settings import runtime_settings
from shared.storage import layout, open_storage

if TYPE_CHECKING:
    from shared.config import Pipeline
    from shared.drive import DriveClient, DriveFile
    from shared.storage import Storage

log = get_logger("pipeline")
LeaseFor = Callable[["Storage", str, str], Lease]  # (destination, pipeline, run id) -> lease
Progress = Callable[[InputRecord, int, int], None]  # (record, inputs done, inputs listed)


@dataclass(frozen=True)
class SyncRequest:
    """A Drive folder sync, with the overrides the caller chose."""

    pipeline: Pipeline
    trigger: str = "cli"
    folder_id: str | None = None
    since: datetime | None = None
    full_refresh: bool = False
    dry_run: bool = False
    # Save the state after this many processed inputs and/or seconds (None: the runtime
    # settings, DRIVEPIPE_CHECKPOINT_EVERY / DRIVEPIPE_CHECKPOINT_SECONDS, else every 10 s).
    checkpoint_every: int | None = None
    checkpoint_seconds: float | None = None
    # Wait this long for another sync of the pipeline to finish before refusing (LeaseHeld).
    lock_wait_seconds: float = 0.0

    @property
    def source_folder(self) -> str:
        """The folder to sync: the request's ``folder_id``, else the pipeline's."""
        folder = self.folder_id or self.pipeline.source.folder_id
        if not folder:
            raise ConfigError(f"pipelines.{self.pipeline.name}.source.folder_id is not set")
        return folder


class Planned(NamedTuple):
    """One file to fetch, the reader format chosen for it, and its manifest record."""

    file: DriveFile
    format: str
    record: InputRecord


class Processed(NamedTuple):
    """What became of one fetched file; ``state`` is ``None`` when it is to be tried again."""

    file: DriveFile
    record: InputRecord
    state: InputState | None

    @property
    def key(self) -> str:
        """The file's state entry."""
        return state_key(self.file)


@dataclass
class SyncPlan:
    """A listed folder: every input's record in ``manifest``, and the files to fetch."""

    manifest: RunManifest
    to_fetch: list[Planned]


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


def state_key(file: DriveFile) -> str:
    """The state entry of a Drive file: its id and path (a shortcut shares its target's id)."""
    return f"{file.id}:{file.path}"


def input_format(file: DriveFile, pipeline: Pipeline) -> str | None:
    """The reader format for a Drive file, or ``None`` when the pipeline does not take it."""
    from shared.transform.readers import detect_format

    formats = pipeline.source.formats
    if file.is_sheet:
        return pipeline.read.sheets_export if "gsheet" in formats else None
    fmt = detect_format(file.name, file.mime_type)
    return fmt if fmt in formats else None


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
    return SyncContext(request, folder, drive, dest, run_id, state, lease)


def _load_state(dest: Storage, pipeline: Pipeline) -> SyncState:
    try:
        return SyncState.load(dest, pipeline.name, definition_hash(pipeline))
    except StorageError as exc:
        raise StorageError(f"cannot read state from {dest.base_url}: {exc}") from exc


def plan(ctx: SyncContext) -> SyncPlan:
    """List the folder once and decide each file's fate; the manifest holds every input."""
    request, pipeline, state = ctx.request, ctx.request.pipeline, ctx.state
    source = pipeline.source
    manifest = RunManifest(
        run_id=ctx.run_id,
        pipeline=pipeline.name,
        trigger=request.trigger,
        source=f"drive:{ctx.folder}",
        destination=pipeline.output.url,
        dry_run=request.dry_run,
    )
    to_fetch: list[Planned] = []
    for file in ctx.drive.walk(
        ctx.folder,
        include=source.include,
        exclude=source.exclude,
        modified_since=request.since or source.modified_since,
        drive_id=source.drive_id,
    ):
        record = input_record(file)
        manifest.inputs.append(record)
        fmt = input_format(file, pipeline)
        key = state_key(file)
        if file.skip_reason or fmt is None:
            record.status = "skipped_unsupported"
            record.error = (
                file.skip_reason or f"format not taken by this pipeline ({file.mime_type})"
            )
        elif not request.full_refresh and state.is_unchanged(
            key, md5=file.md5, modified_time=file.modified_time, size=file.size
        ):
            previous = state.inputs[key]
            if previous.error:  # bad content, unchanged: report it again, don't re-quarantine
                record.status = "failed"
                record.error = (
                    f"unchanged since it failed in run {previous.run_id}: {previous.error}"
                )
                record.quarantine_key = previous.quarantine_key
            else:
                record.status = "skipped_unchanged"
                record.output_keys = list(previous.output_keys)
        else:
            to_fetch.append(Planned(file, fmt, record))
    to_fetch = claim_outputs(pipeline, state, to_fetch, state_key)  # every output key has one owner
    log.info(
        "planned sync",
        extra={
            "pipeline": pipeline.name,
            "run_id": ctx.run_id,
            "inputs": len(manifest.inputs),
            "to_fetch": len(to_fetch),
        },
    )
    return SyncPlan(manifest, to_fetch)


def stale_outputs(previous: Iterable[str], entry: InputState) -> set[str]:
    """The outputs an input produced before and no longer does (none when it failed now)."""
    return set() if entry.error else set(previous) - set(entry.output_keys)


def fetch_and_process(
    pipeline: Pipeline,
    dest: Storage,
    drive: DriveClient,
    planned: Sequence[Planned],
    run_id: str,
    *,
    previous: Mapping[str, InputState] | None = None,
) -> Iterator[Processed]:
    """Fetch ``planned`` in parallel and process each file as it arrives, in arrival order.

    Downloads land in a per-call scratch directory (on Lambda, /tmp), one file per input, each
    removed once processed. With ``previous`` (the state an inline sync updates as it goes),
    outputs a written input no longer produces are deleted at once; a fanned-out run leaves
    that to its finalizer. Storage errors propagate: the destination, not the input, failed.
    Close the iterator (``contextlib.closing``) if you stop early.
    """
    from shared.run.process import process_input

    # Keyed by the whole DriveFile: a shortcut and its target share an id, not a path.
    by_file = {p.file: p for p in planned}
    with tempfile.TemporaryDirectory(prefix="drivepipe-") as scratch:

        def scratch_path(file: DriveFile) -> str:
            name = hashlib.sha1(f"{file.id}/{file.path}".encode()).hexdigest()
            return os.path.join(scratch, name)

        def open_dest(file: DriveFile) -> BinaryIO:
            return open(scratch_path(file), "w+b")

        fetched = drive.fetch_many(
            list(by_file),
            open_dest,
            concurrency=max(1, min(pipeline.concurrency, len(by_file))),
            sheet_format=pipeline.read.sheets_export,
        )
        for file, result in fetched:
            _, fmt, record = by_file[file]
            path = scratch_path(file)
            if isinstance(result, DriveError):  # not the content's fault: retry next run
                record.status, record.error = "failed", f"download failed: {result}"
                entry = None
            else:
                before = previous.get(state_key(file)) if previous is not None else None
                with open(path, "rb") as data:
                    process_input(pipeline, dest, data, fmt, record, run_id)
                entry = _entry(file, record, run_id)
                _report(file, record)
                stale = stale_outputs(before.output_keys if before else (), entry)
                if stale and previous is not None:  # never one another entry still claims
                    stale -= _claimed_by_others(previous, state_key(file))
                for key in sorted(stale):
                    dest.delete(key)
            if os.path.exists(path):
                os.remove(path)
            yield Processed(file, record, entry)


def _claimed_by_others(entries: Mapping[str, InputState], owner: str) -> set[str]:
    return {k for key, entry in entries.items() if key != owner for k in entry.output_keys}


def _entry(file: DriveFile, record: InputRecord, run_id: str) -> InputState:
    return InputState(
        md5=file.md5,
        modified_time=file.modified_time,
        size=file.size,
        path=file.path,
        output_keys=list(record.output_keys),
        run_id=run_id,
        error=record.error,
        quarantine_key=record.quarantine_key,
        output_path=record.output_path,
    )


def _report(file: DriveFile, record: InputRecord) -> None:
    if record.status != "written":
        log.warning(
            "input failed",
            extra={
                "path": file.path,
                "error": record.error,
                "quarantine_key": record.quarantine_key,
            },
        )


def save_manifest(dest: Storage, manifest: RunManifest) -> None:
    """Stamp the manifest's end and write it (a dry run writes nothing)."""
    manifest.ended_at = utc_now()
    if not manifest.dry_run:
        dest.write(
            layout.run_key(manifest.run_id), manifest.to_json(), content_type="application/json"
        )
