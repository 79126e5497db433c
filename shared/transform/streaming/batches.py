"""What the batch sources share: the restart signal, its hints, and frame building.

Types are fixed by the first block (pyarrow's streaming CSV reader works that way). When a
later block holds a value that does not fit, a source raises :class:`SchemaDrift` with a wider
type for that column, and the engine starts the input over with it: the same widening the
whole-file reader does, paid for with a re-read only when drift really happens. Each frame's
index holds the rows' positions in the whole input, so error messages name the same row as
the in-memory path. A row longer than the parser's block raises :class:`LongRow` instead: the
input starts over with blocks twice as big, up to ``streaming.max_row_bytes``.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field, replace
from typing import BinaryIO

import pandas as pd
import pyarrow as pa

from shared.errors import ReadError
from shared.transform.readers.arrow import arrow_to_pandas
from shared.transform.streaming.options import BYTES_PER_MB, LONG_ROW_BLOCKS


class SchemaDrift(Exception):
    """A later block does not fit the types fixed so far: restart with ``hints``."""

    def __init__(self, hints: StreamHints, reason: str) -> None:
        super().__init__(reason)
        self.hints = hints


class LongRow(SchemaDrift):
    """A row is longer than the parser's block: restart with ``hints.block_bytes``."""


@dataclass(frozen=True)
class StreamHints:
    """What earlier attempts learned: column types to force, the encoding, a JSON schema,
    and a block size (when a row did not fit ``streaming.block_mb``)."""

    column_types: dict[str, pa.DataType] = field(default_factory=dict)
    encoding: str | None = None
    json_schema: pa.Schema | None = None
    block_bytes: int | None = None


def bigger_blocks(hints: StreamHints, block_bytes: int, max_row_bytes: int, row: str) -> Exception:
    """``row`` did not fit ``block_bytes``: a restart with blocks twice as big, up to the limit."""
    if block_bytes >= max_row_bytes:
        return row_too_long(row, max_row_bytes)
    bigger = min(2 * block_bytes, max_row_bytes)
    reason = f"{row} is longer than {block_bytes:,} bytes: blocks of {bigger:,} bytes"
    return LongRow(replace(hints, block_bytes=bigger), reason)


def row_too_long(row: str, max_row_bytes: int) -> ReadError:
    """The error for a row longer than streaming reads, naming the setting that raises it."""
    return ReadError(
        f"{row} is longer than {max_row_bytes / BYTES_PER_MB:g} MB, the longest row that streams "
        f"({LONG_ROW_BLOCKS} x streaming.block_mb); raise streaming.block_mb"
    )


def frame_at(table: pa.Table, offset: int, dtype_backend: str) -> pd.DataFrame:
    """``table`` as a frame whose index holds the rows' positions in the whole input."""
    frame = arrow_to_pandas(table, dtype_backend, owned=False)  # a slice of a bigger block
    frame.index = pd.RangeIndex(offset, offset + len(frame))
    return frame


def arrow_input(data: BinaryIO) -> pa.NativeFile:
    """A pyarrow input over ``data`` with its own read position.

    pyarrow reads ahead on background threads; giving it a separate handle means a reader
    that is abandoned mid-file can never move the position of ``data``, which the caller
    goes on to use (e.g. to quarantine the input).
    """
    inner = getattr(data, "_file", data)  # a SpooledTemporaryFile wraps a BytesIO or a file
    if hasattr(inner, "getvalue"):  # in memory (small inputs, tests): a private copy
        return pa.BufferReader(inner.getvalue())
    fd = inner.fileno()
    proc_path = f"/proc/self/fd/{fd}"
    if os.path.exists(proc_path):  # Linux: reopening gives an independent file offset
        return pa.OSFile(proc_path)
    return pa.PythonFile(_PositionalReader(fd), mode="r")


class _PositionalReader(io.RawIOBase):
    """Reads a file descriptor with ``os.pread``: its own offset, the descriptor's untouched."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._position = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        chunk = os.pread(self._fd, len(buffer), self._position)
        buffer[: len(chunk)] = chunk
        self._position += len(chunk)
        return len(chunk)
