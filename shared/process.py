"""One input's journey: bytes → tables → transformed frames → rendered outputs → storage.

Outputs are rendered to temporary files first and uploaded only when every table of the
input succeeded, so a failing input never leaves part of its outputs behind.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, cast

from shared import keys
from shared.errors import DrivepipeError, StorageError
from shared.manifest import InputRecord

if TYPE_CHECKING:
    import pandas as pd

    from shared.config import Pipeline
    from shared.storage import Storage

SPOOL_BYTES = 32 * 1024 * 1024


@dataclass
class RenderedOutput:
    """One output object, complete on local disk, not yet uploaded."""

    key: str
    body: BinaryIO
    size: int


def render(
    pipeline: Pipeline,
    data: BinaryIO,
    fmt: str,
    relpath: str,
    record: InputRecord,
    stack: ExitStack,
) -> list[RenderedOutput]:
    """Read, transform and serialize one input; fills row counts and step stats in ``record``.

    Big CSV/JSON Lines inputs (above ``pipeline.streaming.threshold_mb``) stream in batches.
    """
    from shared.streaming import should_stream, stream_render

    if should_stream(pipeline, data, fmt):
        return stream_render(pipeline, data, fmt, relpath, record, stack)

    from shared.readers import read_table
    from shared.transforms import apply_steps

    rendered: list[RenderedOutput] = []
    rows_in = rows_out = 0
    data.seek(0)
    for table in read_table(data, fmt, pipeline.read):
        frame, stats = apply_steps(table.frame, list(pipeline.steps))
        rows_in += len(table.frame)
        rows_out += len(frame)
        record.steps.extend(
            {"op": s.op, "rows_in": s.rows_in, "rows_out": s.rows_out, "table": table.name}
            for s in stats
        )
        rendered.extend(render_frame(pipeline, frame, relpath, table.name, stack))
    record.rows_in, record.rows_out = rows_in, rows_out
    return rendered


def render_frame(
    pipeline: Pipeline, frame: pd.DataFrame, relpath: str, sheet: str | None, stack: ExitStack
) -> list[RenderedOutput]:
    """Serialize one transformed frame (split into partitions) into temporary files."""
    from shared.formats import extension, split_partitions, write_table

    output = pipeline.output
    ext = extension(output.format, _compression(output.compression))
    rendered: list[RenderedOutput] = []
    for partition, part in _partitions(frame, list(output.partition_by), split_partitions):
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115
        body = cast(BinaryIO, stack.enter_context(spool))
        size = write_table(part, output.format, body, compression=_compression(output.compression))
        body.seek(0)
        key = keys.output_key(relpath, ext, sheet=sheet, partition=partition)
        rendered.append(RenderedOutput(key=key, body=body, size=size))
    return rendered


def _compression(value: str | None) -> str | None:
    return None if value in (None, "none") else value


def _partitions(frame, columns, split_partitions) -> Iterator[tuple[list[tuple[str, str]], object]]:
    if not columns:
        yield [], frame
        return
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DrivepipeError(f"partition column(s) not in the data: {', '.join(missing)}")
    yield from split_partitions(frame, columns)


def process_input(
    pipeline: Pipeline, dest: Storage, data: BinaryIO, fmt: str, record: InputRecord, run_id: str
) -> None:
    """Turn one fetched input into outputs at ``dest``; on a bad input, quarantine it.

    Marks ``record`` as ``written`` or ``failed``. Storage errors propagate: they are about
    the destination, not the input, and the caller decides whether to retry.
    """
    with ExitStack() as stack:
        try:
            outputs = render(pipeline, data, fmt, record.path, record, stack)
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
            record.quarantine_key = keys.quarantine_key(run_id, record.path)
            data.seek(0)
            dest.write(record.quarantine_key, data)
            return
        if pipeline.output.keep_raw:
            record.raw_key = keys.raw_key(record.path)
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
