"""A moved input's table outputs: copied storage-side, with its lineage columns brought to the
new path (Parquet to Parquet), or, for text formats that cannot be edited so, fetched again."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from shared.config import Pipeline
    from shared.drive import DriveFile

Rewrite = Callable[[BinaryIO], bytes]


class CannotMove(Exception):
    """The outputs name their Drive path in a way a copy cannot change: fetch the file again."""


def moved_output(pipeline: Pipeline, file: DriveFile) -> Rewrite | None:
    """How one output of ``file``'s old path becomes its output at the new path: ``None`` (a
    plain copy), or a rewrite of its lineage columns. Raises :class:`CannotMove`."""
    if pipeline.output.layout != "table" or not pipeline.schema_.lineage:
        return None
    if pipeline.output.format != "parquet":
        raise CannotMove(f"{pipeline.output.format} outputs hold their Drive path as text")

    def rewrite(body: BinaryIO) -> bytes:
        import pyarrow as pa
        import pyarrow.parquet as pq

        from shared.run.tables.inputs import output_compression
        from shared.transform.tables.conform import Lineage, parquet_bytes

        table = pq.read_table(body)
        values = Lineage(file.id, file.path, file.modified_time).values()
        for name in ("_drive_path", "_drive_modified_time"):
            at = table.schema.get_field_index(name)
            if at >= 0:
                kind = table.schema.field(at).type
                table = table.set_column(
                    at, table.schema.field(at), pa.repeat(pa.scalar(values[name], kind), len(table))
                )
        return parquet_bytes(table, output_compression(pipeline.output.compression))

    return rewrite
