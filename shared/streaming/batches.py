"""What the batch sources share: the restart signal, its hints, and frame building.

Types are fixed by the first block (pyarrow's streaming CSV reader works that way). When a
later block holds a value that does not fit, a source raises :class:`SchemaDrift` with a wider
type for that column, and the engine starts the input over with it: the same widening the
whole-file reader does, paid for with a re-read only when drift really happens. Each frame's
index holds the rows' positions in the whole input, so error messages name the same row as
the in-memory path.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from typing import BinaryIO

import pandas as pd
import pyarrow as pa

from shared.readers.arrow import arrow_to_pandas


class SchemaDrift(Exception):
    """A later block does not fit the types fixed so far: restart with ``hints``."""

    def __init__(self, hints: StreamHints, reason: str) -> None:
        super().__init__(reason)
        self.hints = hints


@dataclass(frozen=True)
class StreamHints:
    """What earlier attempts learned: column types to force, the encoding, a JSON schema."""

    column_types: dict[str, pa.DataType] = field(default_factory=dict)
    encoding: str | None = None
    json_schema: pa.Schema | None = None


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
