"""One object from a bucket (an upload trigger, or ``drivepipe transform``) into a pipeline."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from shared import deadline
from shared.errors import RetryableError, StorageError
from shared.log import get_logger
from shared.run.attempts import Attempts, crash_reason
from shared.run.engine import Progress, open_store
from shared.run.finish import finish_run
from shared.run.manifest import InputRecord, RunManifest, new_run_id
from shared.run.process import copy_to_temp, process_input, quarantine
from shared.run.tables.register import register_pipeline
from shared.settings import runtime_settings
from shared.storage import layout

if TYPE_CHECKING:
    from shared.config import Pipeline
    from shared.storage import ObjectInfo, Storage

log = get_logger("pipeline")


@dataclass(frozen=True)
class ObjectRequest:
    """One object to process: ``relpath`` under ``source_url`` (a bucket prefix or directory)."""

    pipeline: Pipeline
    source_url: str
    relpath: str
    trigger: str = "upload"
    dry_run: bool = False


def run_object(request: ObjectRequest, *, progress: Progress | None = None) -> RunManifest:
    """Process one object (``relpath`` under ``source_url``) into the pipeline's destination.

    Storage failures (either store unreachable, the object unreadable) raise ``StorageError``,
    which :func:`shared.errors.is_transient` treats as worth a redelivery; so does an object
    the function's time ran out before (``RetryableError``, see :mod:`shared.deadline`). The
    object is processed under an attempt marker (:mod:`shared.run.attempts`): once
    ``DRIVEPIPE_POISON_ATTEMPTS`` invocations in a row died on this version of it, it is
    quarantined unprocessed and the event acknowledged.
    """
    from shared.transform.readers import detect_format

    pipeline = request.pipeline
    dest = open_store(pipeline.output.url, "destination")
    source = open_store(request.source_url, "source")
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
            raise StorageError(f"cannot read {record.source_id}: {exc}") from exc
        with data:
            _process(pipeline, dest, data, fmt, record, manifest.run_id, info)
        register_pipeline(pipeline, dest, manifest.catalog)  # Glue / BigQuery, if set
    if progress:
        progress(record, 1, 1)
    finish_run(dest, manifest, notify=pipeline.notify)
    failed = record.status == "failed"  # quarantined: ERROR, so a severity alert fires
    log.log(
        logging.ERROR if failed else logging.INFO,
        "object failed" if failed else "object processed",
        extra={
            "pipeline": pipeline.name,
            "run_id": manifest.run_id,
            "path": request.relpath,
            "status": record.status,
            **({"error": record.error} if failed else {}),
        },
    )
    return manifest


@dataclass(frozen=True)
class _Version:
    """An uploaded object's version, as an attempt marker records it."""

    path: str
    md5: str | None
    modified_time: str | None


def _process(
    pipeline: Pipeline,
    dest: Storage,
    data: BinaryIO,
    fmt: str,
    record: InputRecord,
    run_id: str,
    info: ObjectInfo,
) -> None:
    """``process_input`` under an attempt marker and within the function's time."""
    late = deadline.refusal()
    if late is not None:
        raise RetryableError(f"{record.source_id}: {late}")
    attempts = Attempts(dest, pipeline.name, run_id, runtime_settings().poison_attempts)
    key = record.source_id  # the object's URL: the marker's name
    updated = info.updated.isoformat() if info.updated else None
    crashes = attempts.begin(key, _Version(record.path, info.etag, updated))
    if crashes >= attempts.limit:  # a poison pill: acknowledged, never processed again
        quarantine(dest, data, record, run_id, crash_reason(crashes))
    else:
        try:
            with deadline.for_input():
                process_input(pipeline, dest, data, fmt, record, run_id)
        except Exception:  # the run's error, not a crash on this object
            attempts.abandon(key)
            raise
    attempts.done(key)
    if record.status == "deferred":  # not the invocation's first: a redelivery takes it
        raise RetryableError(f"{record.source_id}: {record.error}")


def relative_to_prefix(url: str, prefix_url: str) -> str | None:
    """``s3://b/incoming/a/x.csv`` under ``s3://b/incoming/a/`` → ``x.csv``; else ``None``."""
    prefix = prefix_url if prefix_url.endswith("/") else prefix_url + "/"
    if not url.startswith(prefix):
        return None
    rel = url[len(prefix) :]
    return rel if rel and not layout.is_reserved(rel) else None
