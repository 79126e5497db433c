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

from shared.errors import DrivepipeError, StorageError
from shared.run.manifest import InputRecord
from shared.storage import layout
from shared.transform.outputs import SPOOL_BYTES
from shared.transform.render import render

if TYPE_CHECKING:
    from shared.config import Pipeline
    from shared.storage import Storage


def process_input(
    pipeline: Pipeline, dest: Storage, data: BinaryIO, fmt: str, record: InputRecord, run_id: str
) -> None:
    """Turn one fetched input into outputs at ``dest``; on a bad input, quarantine it.

    Marks ``record`` as ``written`` or ``failed``. Storage errors propagate: they are about
    the destination, not the input, and the caller decides whether to retry.
    """
    relpath = record.output_path or record.path  # what its keys are named after
    with ExitStack() as stack:
        try:
            outputs = render(pipeline, data, fmt, relpath, record, stack)
        except (
            DrivepipeError,
            ValueError,
            TypeError,
            KeyError,
            OverflowError,
            MemoryError,
            UnicodeError,
        ) as exc:
            # Anything the input's content caused: quarantine the bytes and report why.
            record.status = "failed"
            record.error = f"{type(exc).__name__}: {exc}"
            record.quarantine_key = layout.quarantine_key(run_id, relpath)
            data.seek(0)
            dest.write(record.quarantine_key, data)
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
