"""One object from a bucket (an upload trigger, or ``drivepipe transform``) into a pipeline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from shared.errors import StorageError
from shared.log import get_logger
from shared.run.engine import Progress, open_store, save_manifest
from shared.run.manifest import InputRecord, RunManifest, new_run_id
from shared.run.process import copy_to_temp, process_input
from shared.run.tables.register import register_pipeline
from shared.storage import layout

if TYPE_CHECKING:
    from shared.config import Pipeline

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
    which :func:`shared.errors.is_transient` treats as worth a redelivery.
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
            process_input(pipeline, dest, data, fmt, record, manifest.run_id)
        register_pipeline(pipeline, dest, manifest.catalog)  # Glue / BigQuery, if set
    if progress:
        progress(record, 1, 1)
    save_manifest(dest, manifest)
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
