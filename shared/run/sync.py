"""The two runs every trigger ends in: a Drive folder sync, and one uploaded object.

``run_sync`` lists the folder, skips what the state says is unchanged, downloads the rest in
parallel and processes each file as soon as it arrives. ``run_object`` processes a single
object from a bucket (upload triggers and ``drivepipe transform``).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, BinaryIO

from shared.errors import DriveError, RetryableError, StorageError
from shared.log import get_logger
from shared.run.lease import Lease
from shared.run.manifest import InputRecord, RunManifest, input_record, new_run_id, utc_now
from shared.run.process import copy_to_temp, process_input
from shared.run.state import InputState, SyncState, definition_hash
from shared.secrets import load_into_env as load_secrets_into_env
from shared.settings import runtime_settings
from shared.storage import layout, open_storage

if TYPE_CHECKING:
    from shared.config import Pipeline
    from shared.drive import DriveClient, DriveFile
    from shared.storage import Storage

GSHEET = "application/vnd.google-apps.spreadsheet"
log = get_logger("pipeline")
Progress = Callable[[InputRecord, int, int], None]


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


@dataclass(frozen=True)
class Checkpoints:
    """When ``run_sync`` saves its state: every ``every`` inputs or ``seconds``, whichever first."""

    every: int | None
    seconds: float

    @classmethod
    def for_request(cls, request: SyncRequest) -> Checkpoints:
        """The request's settings, else the environment's, else every 10 seconds."""
        settings = runtime_settings()
        every = request.checkpoint_every
        if every is None:
            every = settings.checkpoint_every
        seconds = request.checkpoint_seconds
        if seconds is None:
            seconds = settings.checkpoint_seconds
        return cls(every, seconds)

    def due(self, since_save: int, last_save: float) -> bool:
        """True when a checkpoint is due after ``since_save`` inputs since ``last_save``."""
        if self.every is not None and since_save >= self.every:
            return True
        return time.monotonic() - last_save >= self.seconds


@dataclass(frozen=True)
class ObjectRequest:
    """One object to process: ``relpath`` under ``source_url`` (a bucket prefix or directory)."""

    pipeline: Pipeline
    source_url: str
    relpath: str
    trigger: str = "upload"
    dry_run: bool = False


def input_format(file: DriveFile, pipeline: Pipeline) -> str | None:
    """The reader format for a Drive file, or ``None`` when the pipeline does not take it."""
    from shared.transform.readers import detect_format

    formats = pipeline.source.formats
    if file.mime_type == GSHEET:
        return pipeline.read.sheets_export if "gsheet" in formats else None
    fmt = detect_format(file.name, file.mime_type)
    return fmt if fmt in formats else None


def _open_destination(url: str) -> Storage:
    try:
        return open_storage(url)
    except StorageError as exc:
        raise RetryableError(f"destination {url} is not reachable: {exc}") from exc


def _load_state(dest: Storage, pipeline: Pipeline) -> SyncState:
    try:
        return SyncState.load(dest, pipeline.name, definition_hash(pipeline))
    except StorageError as exc:
        raise RetryableError(f"cannot read state from {dest.base_url}: {exc}") from exc


def _save_manifest(dest: Storage, manifest: RunManifest) -> None:
    manifest.ended_at = utc_now()
    if not manifest.dry_run:
        dest.write(
            layout.run_key(manifest.run_id), manifest.to_json(), content_type="application/json"
        )


def plan_sync(
    request: SyncRequest, drive: DriveClient, state: SyncState, manifest: RunManifest
) -> list[tuple[DriveFile, str, InputRecord]]:
    """List the folder and decide each file's fate; returns the files to fetch."""
    pipeline, source = request.pipeline, request.pipeline.source
    folder_id = request.folder_id or source.folder_id
    to_fetch: list[tuple[DriveFile, str, InputRecord]] = []
    for file in drive.walk(
        folder_id or "",
        include=source.include,
        exclude=source.exclude,
        modified_since=request.since or source.modified_since,
        drive_id=source.drive_id,
    ):
        record = input_record(file)
        manifest.inputs.append(record)
        fmt = input_format(file, pipeline)
        if file.skip_reason or fmt is None:
            record.status = "skipped_unsupported"
            record.error = (
                file.skip_reason or f"format not taken by this pipeline ({file.mime_type})"
            )
        elif not request.full_refresh and state.is_unchanged(
            state_key(file), md5=file.md5, modified_time=file.modified_time, size=file.size
        ):
            previous = state.inputs[state_key(file)]
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
            to_fetch.append((file, fmt, record))
    return to_fetch


def run_sync(
    request: SyncRequest, *, drive: DriveClient | None = None, progress: Progress | None = None
) -> RunManifest:
    """Sync one pipeline's Drive folder into its destination and return the manifest."""
    from shared.drive import DriveClient

    pipeline = request.pipeline
    folder_id = request.folder_id or pipeline.source.folder_id
    if not folder_id:
        from shared.errors import ConfigError

        raise ConfigError(f"pipelines.{pipeline.name}.source.folder_id is not set")
    if drive is None:
        load_secrets_into_env()  # DRIVE_SECRET_ARN on Lambda; a no-op elsewhere
        drive = DriveClient.from_env()
    dest = _open_destination(pipeline.output.url)
    run_id = new_run_id()
    if request.dry_run:
        return _sync_under_lease(request, drive, dest, run_id, None, progress)
    lease = sync_lease(dest, pipeline.name, run_id)
    try:
        lease.acquire(wait=request.lock_wait_seconds)
    except StorageError as exc:
        raise RetryableError(f"cannot take the sync lease in {dest.base_url}: {exc}") from exc
    lease.start_renewing()
    try:
        return _sync_under_lease(request, drive, dest, run_id, lease, progress)
    finally:
        lease.release()


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
    return Lease(
        dest,
        layout.sync_lock(pipeline),
        ttl=ttl or runtime_settings().lease_seconds,
        holder=holder,
        run_id=run_id,
    )


def _save_state(dest: Storage, state: SyncState, lease: Lease | None) -> None:
    if lease is not None and state.dirty:
        lease.check()  # LeaseLost: another sync took over, its state wins
    state.save(dest)


def _sync_under_lease(
    request: SyncRequest,
    drive: DriveClient,
    dest: Storage,
    run_id: str,
    lease: Lease | None,
    progress: Progress | None,
) -> RunManifest:
    pipeline = request.pipeline
    folder_id = request.folder_id or pipeline.source.folder_id
    state = _load_state(dest, pipeline)
    manifest = RunManifest(
        run_id=run_id,
        pipeline=pipeline.name,
        trigger=request.trigger,
        source=f"drive:{folder_id}",
        destination=pipeline.output.url,
        dry_run=request.dry_run,
    )
    to_fetch = plan_sync(request, drive, state, manifest)
    total = len(manifest.inputs)
    done = total - len(to_fetch)
    log.info(
        "planned sync",
        extra={
            "pipeline": pipeline.name,
            "run_id": manifest.run_id,
            "inputs": total,
            "to_fetch": len(to_fetch),
        },
    )
    if request.dry_run:
        _save_manifest(dest, manifest)
        return manifest

    # Keyed by the whole DriveFile: a shortcut and its target share an id, not a path.
    planned = {file: (fmt, record) for file, fmt, record in to_fetch}
    checkpoints = Checkpoints.for_request(request)
    last_checkpoint, since_checkpoint = time.monotonic(), 0
    # Downloads land in a per-run scratch directory (on Lambda, /tmp), one file per input,
    # each removed as soon as it has been processed.
    with tempfile.TemporaryDirectory(prefix="drivepipe-") as scratch:

        def open_dest(file: DriveFile) -> BinaryIO:
            return open(_scratch_path(scratch, file), "w+b")

        try:
            results = drive.fetch_many(
                [f for f, _, _ in to_fetch],
                open_dest,
                concurrency=pipeline.concurrency,
                sheet_format=pipeline.read.sheets_export,
            )
            for file, result in results:
                fmt, record = planned[file]
                path = _scratch_path(scratch, file)
                if isinstance(result, DriveError):  # not the content's fault: retry next run
                    record.status, record.error = "failed", f"download failed: {result}"
                    state.forget(state_key(file))
                else:
                    with open(path, "rb") as data:
                        _process_and_record(
                            pipeline, dest, state, file, data, fmt, record, manifest.run_id
                        )
                if os.path.exists(path):
                    os.remove(path)
                done += 1
                since_checkpoint += 1
                if progress:
                    progress(record, done, total)
                if checkpoints.due(since_checkpoint, last_checkpoint):
                    _save_state(dest, state, lease)  # only inputs whose outputs are durable
                    last_checkpoint, since_checkpoint = time.monotonic(), 0
        finally:
            try:
                _save_state(dest, state, lease)
            finally:
                _save_manifest(dest, manifest)
    log.info(
        "sync finished",
        extra={"pipeline": pipeline.name, "run_id": manifest.run_id, **manifest.counts()},
    )
    return manifest


def state_key(file: DriveFile) -> str:
    """The state entry of a Drive file: its id and path (a shortcut shares its target's id)."""
    return f"{file.id}:{file.path}"


def _scratch_path(scratch: str, file: DriveFile) -> str:
    return os.path.join(scratch, hashlib.sha1(f"{file.id}/{file.path}".encode()).hexdigest())


def _process_and_record(
    pipeline: Pipeline,
    dest: Storage,
    state: SyncState,
    file: DriveFile,
    data: BinaryIO,
    fmt: str,
    record: InputRecord,
    run_id: str,
) -> None:
    previous = state.inputs.get(state_key(file))
    process_input(pipeline, dest, data, fmt, record, run_id)
    outcome = InputState(
        md5=file.md5,
        modified_time=file.modified_time,
        size=file.size,
        path=file.path,
        output_keys=list(record.output_keys),
        run_id=run_id,
        error=record.error,
        quarantine_key=record.quarantine_key,
    )
    state.record(state_key(file), outcome)
    if record.status != "written":
        log.warning(
            "input failed",
            extra={
                "path": file.path,
                "error": record.error,
                "quarantine_key": record.quarantine_key,
            },
        )
        return
    if previous:  # outputs this input no longer produces (a sheet or partition went away)
        for stale in set(previous.output_keys) - set(record.output_keys):
            dest.delete(stale)


def run_object(request: ObjectRequest, *, progress: Progress | None = None) -> RunManifest:
    """Process one object (``relpath`` under ``source_url``) into the pipeline's destination."""
    from shared.transform.readers import detect_format

    pipeline = request.pipeline
    dest = _open_destination(pipeline.output.url)
    source = _open_destination(request.source_url)
    manifest = RunManifest(
        run_id=new_run_id(),
        pipeline=pipeline.name,
        trigger=request.trigger,
        source=source.url(request.relpath),
        destination=pipeline.output.url,
        dry_run=request.dry_run,
    )
    info = source.stat(request.relpath)
    record = InputRecord(
        source_id=source.url(request.relpath),
        path=request.relpath,
        size=info.size if info else None,
        md5=info.etag if info else None,
    )
    manifest.inputs.append(record)
    fmt = detect_format(request.relpath)
    if info is None:
        record.status, record.error = "failed", "object not found"
    elif fmt is None or fmt not in pipeline.source.formats:
        record.status = "skipped_unsupported"
        record.error = f"format not taken by this pipeline ({request.relpath})"
    elif not request.dry_run:
        try:
            with source.open_read(request.relpath) as stream:
                data = copy_to_temp(stream)
        except StorageError as exc:
            raise RetryableError(f"cannot read {record.source_id}: {exc}") from exc
        with data:
            process_input(pipeline, dest, data, fmt, record, manifest.run_id)
    if progress:
        progress(record, 1, 1)
    _save_manifest(dest, manifest)
    log.info(
        "object processed",
        extra={
            "pipeline": pipeline.name,
            "run_id": manifest.run_id,
            "path": request.relpath,
            "status": record.status,
        },
    )
    return manifest


def relative_to_prefix(url: str, prefix_url: str) -> str | None:
    """``s3://b/incoming/a/x.csv`` under ``s3://b/incoming/a/`` → ``x.csv``; else ``None``."""
    prefix = prefix_url if prefix_url.endswith("/") else prefix_url + "/"
    if not url.startswith(prefix):
        return None
    rel = url[len(prefix) :]
    return rel if rel and not layout.is_reserved(rel) else None
