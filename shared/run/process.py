"""One fetched input into the destination: render it, then upload its outputs, or quarantine it.

Outputs are rendered to temporary files first (:mod:`shared.transform.render`) and uploaded only
when every table of the input succeeded, so a failing input never leaves part of its outputs
behind.
"""

from __future__ import annotations

import shutil
import tempfile
from contextlib import ExitStack
from typing import TYPE_CHECKING, BinaryIO, cast

from shared.crashpoints import crash_point
from shared.errors import DriveError, LeaseHeld, LeaseLost, RetryableError, StorageError
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

    Marks ``record`` as ``written`` or ``failed``. This is the per-input boundary: whatever
    rendering the input raises (a reader, a step or a serializer; ``RecursionError`` and other
    bugs included) fails this input alone, except the run's own infrastructure errors
    (:data:`RUN_ERRORS`). Writing to the destination is outside the boundary: its
    ``StorageError`` propagates, as it is about the destination, not the input, and the
    caller decides whether to retry.
    """
    relpath = record.output_path or record.path  # what its keys are named after
    crash_point("processing")
    with ExitStack() as stack:
        try:
            outputs = render(pipeline, data, fmt, relpath, record, stack)
        except RUN_ERRORS:
            raise
        except Exception as exc:
            # Anything the input's content caused: quarantine the bytes and report why.
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
        record.status = "written"
        crash_point("outputs_written")


def quarantine(
    dest: Storage, data: BinaryIO, record: InputRecord, run_id: str, reason: str
) -> None:
    """Fail ``record`` with ``reason`` and keep a copy of the input's bytes in quarantine."""
    record.status = "failed"
    record.error = reason
    record.quarantine_key = layout.quarantine_key(run_id, record.output_path or record.path)
    data.seek(0)
    dest.write(record.quarantine_key, data)


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
