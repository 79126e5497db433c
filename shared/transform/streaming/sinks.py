"""Output sinks: transformed batches appended to one temporary file per output object.

Parquet is written one row group at a time (``ParquetWriter``), CSV through one
``CSVWriter`` (one header), JSON Lines appended; ``gzip`` wraps the whole stream. The first
batch fixes the output schema; later batches are cast to it, so a column that a step turns
into a different type part-way through fails with a message instead of a broken file.
"""

from __future__ import annotations

import contextlib
import gzip
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from typing import BinaryIO, cast

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from shared.errors import DrivepipeError, TransformError
from shared.transform.writers import (
    DEFAULT_PARQUET_COMPRESSION,
    PARQUET_ROW_GROUP_ROWS,
    CountingWriter,
    escape_formula_cells,
    split_partitions,
    to_arrow,
    write_jsonl,
)

SPOOL_BYTES = 32 * 1024 * 1024


class Sink:
    """One output object being written to a temporary file (``body``)."""

    def __init__(
        self,
        fmt: str,
        compression: str | None,
        stack: ExitStack,
        *,
        buffer_rows: int,
        conform: Callable[[pa.Table], pa.Table] | None = None,
    ) -> None:
        self.fmt = fmt
        self.compression = compression
        self.table_conform = conform  # to the input's table (output.layout = "table")
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115
        self.body = cast(BinaryIO, stack.enter_context(spool))
        self._counter = CountingWriter(self.body)
        self._text: BinaryIO = self._counter  # type: ignore[assignment]
        if fmt != "parquet" and compression == "gzip":
            zipped = gzip.GzipFile(fileobj=self._counter, mode="wb", mtime=0, compresslevel=6)
            self._text = cast(BinaryIO, zipped)
        self._buffer_rows = buffer_rows
        self._pending: list[pa.Table] = []
        self.buffered_rows = 0
        self.rows = 0
        self._schema: pa.Schema | None = None
        self._schema_fixed = False
        self._writer: pq.ParquetWriter | pacsv.CSVWriter | None = None
        self._closed = False
        stack.callback(self._abandon)  # runs before the spool closes (the stack is LIFO)

    def write(self, frame: pd.DataFrame) -> None:
        """Append one batch (an empty batch only fixes the schema if none is known yet)."""
        if self.fmt == "jsonl":
            if len(frame):
                if self.table_conform is not None:
                    frame = self.table_conform(to_arrow(frame)).to_pandas(
                        types_mapper=pd.ArrowDtype
                    )
                write_jsonl(frame, self._text)
                self.rows += len(frame)
            return
        arrow = to_arrow(frame)
        if self.table_conform is not None:
            arrow = self.table_conform(arrow)
        table = self._conform(arrow)
        if not table.num_rows:
            return
        if self.buffered_rows + table.num_rows > self._buffer_rows:
            self.flush()  # row groups stay within buffer_rows
        self._pending.append(table)
        self.buffered_rows += table.num_rows
        if self.buffered_rows >= self._buffer_rows:
            self.flush()

    def flush(self) -> None:
        """Write buffered rows (one Parquet row group)."""
        if not self._pending:
            return
        table = pa.concat_tables(self._pending)
        self._pending, self.buffered_rows = [], 0
        self._open(table.schema).write_table(table)
        self.rows += table.num_rows

    def close(self) -> int:
        """Finish the file; returns its size in bytes and rewinds ``body`` for upload."""
        if self.fmt != "jsonl":
            self.flush()
            self._open().close()
        self._closed = True
        if self._text is not self._counter:
            self._text.close()
        self.body.flush()
        self.body.seek(0)
        return self._counter.count

    def _abandon(self) -> None:
        """A failed attempt: close the writer while its file is still open, then drop both."""
        if not self._closed and self._writer is not None:
            self._closed = True
            with contextlib.suppress(Exception):
                self._writer.close()

    def _conform(self, table: pa.Table) -> pa.Table:
        # Empty batches (everything filtered out) only suggest a schema; rows fix it.
        if not self._schema_fixed:
            if table.num_rows or self._schema is None:
                self._schema = table.schema
            self._schema_fixed = table.num_rows > 0
            return table
        schema = cast(pa.Schema, self._schema)
        if table.schema.equals(schema, check_metadata=False):
            return table
        if table.column_names != schema.names:
            raise TransformError(
                f"the steps produced columns {table.column_names} in a later batch but "
                f"{schema.names} in the first; output columns must not depend on the data"
            )
        try:
            return table.cast(schema)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            changed = [
                f"{f.name!r} ({schema.field(f.name).type} → {f.type})"
                for f in table.schema
                if f.type != schema.field(f.name).type
            ]
            raise TransformError(
                f"column(s) {', '.join(changed)} changed type between batches ({exc}); add a "
                "cast step to give each one type"
            ) from None

    def _open(self, first: pa.Schema | None = None) -> pq.ParquetWriter | pacsv.CSVWriter:
        """The writer, opened on the first rows' schema (as written: the CSV sink's escaping
        decodes dictionary text), else the schema known so far."""
        if self._writer is None:
            schema = first or (self._schema if self._schema is not None else pa.schema([]))
            if self.fmt == "parquet":
                codec = self.compression or DEFAULT_PARQUET_COMPRESSION
                self._writer = pq.ParquetWriter(
                    self._counter,
                    schema,
                    compression=codec if codec != "none" else "none",
                    store_schema=self.table_conform is None,  # a table's file: Parquet types
                )
            else:
                self._writer = pacsv.CSVWriter(
                    self._text, schema, write_options=pacsv.WriteOptions(include_header=True)
                )
        return self._writer


class CsvFormulaSink(Sink):
    """CSV sink that escapes formula-like text cells, as ``write_table`` does."""

    def _conform(self, table: pa.Table) -> pa.Table:
        return escape_formula_cells(super()._conform(table))


def make_sink(
    fmt: str,
    compression: str | None,
    stack: ExitStack,
    *,
    buffer_rows: int,
    conform: Callable[[pa.Table], pa.Table] | None = None,
) -> Sink:
    """A sink for one output object of ``fmt`` (``conform``: cast each batch to its table)."""
    kind = CsvFormulaSink if fmt == "csv" else Sink
    rows = min(buffer_rows, PARQUET_ROW_GROUP_ROWS)
    return kind(fmt, compression, stack, buffer_rows=rows, conform=conform)


class PartitionedSinks:
    """One sink per Hive partition value; at most ``max_partitions`` of them.

    Buffered rows across all partitions are flushed once they pass ``buffer_rows``, so memory
    stays bounded however many partitions are open.
    """

    def __init__(
        self,
        columns: list[str],
        new_sink: Callable[[], Sink],
        *,
        max_partitions: int,
        buffer_rows: int,
    ) -> None:
        self.columns = columns
        self._new_sink = new_sink
        self.max_partitions = max_partitions
        self._buffer_rows = buffer_rows
        self.sinks: dict[tuple[tuple[str, str], ...], Sink] = {}

    def write(self, frame: pd.DataFrame) -> None:
        """Route each row of ``frame`` to its partition's sink."""
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise DrivepipeError(f"partition column(s) not in the data: {', '.join(missing)}")
        for labels, part in split_partitions(frame, self.columns):
            key = tuple(labels)
            sink = self.sinks.get(key)
            if sink is None:
                if len(self.sinks) >= self.max_partitions:
                    raise DrivepipeError(
                        f"more than streaming.max_partitions={self.max_partitions} partition "
                        f"values of {', '.join(self.columns)}; raise the limit or partition by "
                        "a coarser column"
                    )
                sink = self.sinks[key] = self._new_sink()
            sink.write(part)
        if sum(s.buffered_rows for s in self.sinks.values()) >= self._buffer_rows:
            for sink in self.sinks.values():
                sink.flush()
