"""One fetched input into the destination: render it, then upload its outputs, or quarantine it.

Outputs are rendered to temporary files first (:mod:`shared.transform.render`) and uploaded only
when every table of the input succeeded, so a failing input never leaves part of its outputs
behind.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from contextlib import ExitStack
from typing import TYPE_CHECKING, BinaryIO, cast

from shared.crashpoints import crash_point
from shared.errors import (
    ContractError,
    DriveError,
    LeaseHeld,
    LeaseLost,
    OutOfTime,
    RetryableError,
    StorageError,
)
from shared.run.manifest import InputRecord
from shared.storage import layout
from shared.transform.outputs import SPOOL_BYTES
from shared.transform.render import render

if TYPE_CHECKING:
    from shared.config import Pipeline
    from shared.storage import Storage

# The run's own infrastructure: raised while rendering an input they still stop the run (or
# ask for a redelivery) instead of failing that one input. A StorageError while rendering
# (reading the fetched bytes, say) is the input's failure; writing its outputs or its
# quarantine copy to the destination happens outside the boundary and always propagates.
# An ImportError is a module missing from the deployed package, not the input's fault.
RUN_ERRORS: tuple[type[Exception], ...] = (
    DriveError,
    LeaseLost,
    LeaseHeld,
    RetryableError,
    ImportError,
)


def process_input(
    pipeline: Pipeline, dest: Storage, data: BinaryIO, fmt: str, record: InputRecord, run_id: str
) -> None:
    """Turn one fetched input into outputs at ``dest``; on a bad input, quarantine it.

    Marks ``record`` as ``written``, ``failed`` or ``deferred``. This is the per-input boundary:
    whatever rendering the input raises (a reader, a step or a serializer; ``RecursionError``
    and other bugs included) fails this input alone, except the run's own infrastructure errors
    (:data:`RUN_ERRORS`). Writing to the destination is outside the boundary: its
    ``StorageError`` propagates, as it is about the destination, not the input, and the
    caller decides whether to retry. With ``output.layout = "table"`` the outputs are cast to
    their tables' schemas, which the input may change (:mod:`shared.run.tables.inputs`).

    An input that would outlast the function's remaining time (:class:`OutOfTime`, from the
    cooperative checks of :mod:`shared.deadline`) is ``deferred`` to the next run, unless it was
    the invocation's first: it had all of the function's time, so it fails and is quarantined.
    """
    from shared.run.tables.inputs import RENDER_ATTEMPTS, input_tables

    relpath = record.output_path or record.path  # what its keys are named after
    tables = input_tables(pipeline, dest, record, run_id)
    crash_point("processing")
    for _ in range(RENDER_ATTEMPTS):
        record.steps, record.output_keys, record.bytes_out = [], [], 0
        with ExitStack() as stack:
            try:
                outputs = render(pipeline, data, fmt, relpath, record, stack, tables=tables)
            except RUN_ERRORS:
                raise
            except OutOfTime as exc:
                if not exc.first:
                    defer(record, f"{exc}; left for the next run")
                    return
                reason = f"{describe_failure(exc)}; it had the function's whole time to itself"
                quarantine(dest, data, record, run_id, reason)
                return
            except Exception as exc:
                # Anything the input's content caused: quarantine the bytes and report why.
                quarantine(dest, data, record, run_id, describe_failure(exc))
                return
            if tables is not None:
                try:
                    if tables.commit():
                        continue  # another writer changed a table meanwhile: render again
                except ContractError as exc:
                    quarantine(dest, data, record, run_id, describe_failure(exc))
                    return
            if pipeline.output.keep_raw:
                record.raw_key = layout.raw_key(relpath)
                data.seek(0)
                dest.write(record.raw_key, data)
            for out in outputs:
                dest.write(out.key, out.body)
                record.output_keys.append(out.key)
                record.bytes_out += out.size
            if tables is not None and tables.settle():
                continue
            record.status = "written"
            crash_point("outputs_written")
            return
    raise RetryableError(
        f"{record.path}: its tables' schema kept changing while it was written "
        f"({RENDER_ATTEMPTS} renders); try again"
    )


def quarantine(
    dest: Storage,
    data: BinaryIO,
    record: InputRecord,
    run_id: str,
    reason: str,
    *,
    relpath: str | None = None,
) -> None:
    """Fail ``record`` with ``reason`` and keep a copy of the input's bytes in quarantine.

    The copy is named after ``relpath`` (default: the input's output path), or after a hash of
    the input's id and path when that gives no usable key (too long, say): a copy is always kept.
    """
    record.status = "failed"
    record.error = reason
    try:
        key = layout.quarantine_key(run_id, relpath or record.output_path or record.path)
    except StorageError:
        digest = hashlib.sha1(f"{record.source_id}:{record.path}".encode(), usedforsecurity=False)
        key = layout.quarantine_key(run_id, digest.hexdigest()[:16])
    record.quarantine_key = key
    data.seek(0)
    dest.write(key, data)


def defer(record: InputRecord, reason: str) -> None:
    """Leave ``record`` for the next run (the function's time ran out), saying why."""
    record.status = "deferred"
    record.error = reason
    record.rows_in = record.rows_out = None
    record.steps.clear()


def describe_failure(exc: BaseException) -> str:
    """``TypeName: message`` for an input's failure record (the type alone when no message)."""
    message = str(exc)
    if isinstance(exc, RecursionError):
        message = f"{message} (the input is nested too deeply to process)"
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def copy_to_temp(source: BinaryIO) -> BinaryIO:
    """Copy a stream into a seekable temporary file (spooled in memory while small)."""
    temp = cast(BinaryIO, tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES))  # noqa: SIM115 caller closes
    try:
        shutil.copyfileobj(source, temp, 1024 * 1024)
    except OSError as exc:
        temp.close()
        raise StorageError(f"reading the source failed: {exc}") from exc
    temp.seek(0)
    return temp
