"""Make data fit a table: an input's columns observed, an Arrow table cast to the table's
schema (its columns, in its order, with the lineage values), and a Parquet file rewritten to a
newer schema without going back to Drive.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from shared.errors import ContractError
from shared.transform.tables.schema import Observed, TableSchema
from shared.transform.tables.types import from_arrow, to_arrow

if TYPE_CHECKING:
    import pandas as pd

Conform = Callable[[pa.Table], pa.Table]


@dataclass(frozen=True)
class Target:
    """Where one table of an input goes: the table's name, its schema, and the cast to it."""

    table: str
    schema: TableSchema
    conform: Conform


class Tables(Protocol):
    """What the renderers ask of one input's tables (``shared.run.tables.inputs``)."""

    def prepare(self, sheet: str | None, frame: pd.DataFrame) -> Target:
        """The target of ``frame``, an input's table (``sheet``: its sheet, if read by sheet)."""
        ...

    def grows(self, table: str, frame: pd.DataFrame) -> bool:
        """True when a later batch of a streamed input needs more of the table than its first
        batches did (the input is then rendered again from the start)."""
        ...


@dataclass(frozen=True)
class Lineage:
    """Where an input's rows come from: its Drive id, path and modified time."""

    drive_id: str | None
    path: str | None
    modified_time: str | None  # RFC 3339, as Drive sends it

    def values(self) -> dict[str, Any]:
        """Column name → value of the lineage columns."""
        moment = None
        if self.modified_time:
            try:
                moment = datetime.fromisoformat(self.modified_time.replace("Z", "+00:00"))
            except ValueError:
                moment = None
        return {
            "_drive_id": self.drive_id,
            "_drive_path": self.path,
            "_drive_modified_time": moment,
        }


def observe_frame(frame: pd.DataFrame, exclude: Iterable[str] = ()) -> Observed:
    """Each column's table type (``None`` when all its values are null), in frame order.

    Reads the types and null counts off the frame's Arrow form (what the writer converts it
    to anyway: zero-copy for Arrow-backed columns). A column no table type fits (Python
    objects of mixed kinds, say) raises, naming it.
    """
    from shared.transform.writers import to_arrow

    skip = set(exclude)
    table = to_arrow(frame)
    return [item for item in observe_table(table) if item[0] not in skip]


def observe_table(table: pa.Table) -> Observed:
    """Like :func:`observe_frame`, for an Arrow table."""
    observed: Observed = []
    for field, column in zip(table.schema, table.columns, strict=True):
        try:
            kind = from_arrow(field.type)
        except ValueError as exc:
            raise ContractError(f"column {field.name!r}: {exc}") from None
        observed.append((field.name, None if column.null_count == len(column) else kind))
    return observed


def arrow_schema(schema: TableSchema) -> pa.Schema:
    """The Arrow schema every file of the table has (no pandas metadata)."""
    return pa.schema([pa.field(c.name, to_arrow(c.type), nullable=True) for c in schema.columns])


def _cast(column: pa.ChunkedArray, target: pa.DataType, name: str) -> pa.ChunkedArray:
    if column.type == target:
        return column
    temporal = pa.types.is_temporal(column.type) and pa.types.is_temporal(target)
    try:
        return column.cast(target, safe=not temporal)  # sub-microsecond digits are dropped
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise ContractError(
            f"column {name!r}: cannot store {column.type} as {target}: {exc}"
        ) from None


def conform(table: pa.Table, schema: TableSchema, lineage: Lineage | None) -> pa.Table:
    """``table`` with exactly ``schema``'s columns, in order and type: missing columns null,
    others dropped, lineage columns set from ``lineage`` (kept from ``table`` when ``None``).

    Raises ``ContractError`` when a value does not cast or a non-nullable column holds nulls.
    """
    rows = table.num_rows
    present = set(table.column_names)
    values = lineage.values() if lineage is not None else {}
    fields = []
    arrays = []
    for column, field in zip(schema.columns, arrow_schema(schema), strict=True):
        array: pa.Array | pa.ChunkedArray
        if column.lineage and lineage is not None:
            array = _constant(values.get(column.name), field.type, rows)
            field = field.with_type(array.type)
        elif column.name in present:
            array = _cast(table.column(column.name), field.type, column.name)
        else:
            array = pa.nulls(rows, field.type)
        if not column.nullable and array.null_count:
            raise ContractError(
                f"column {column.name!r} is declared nullable = false and has "
                f"{array.null_count} null value(s)"
            )
        arrays.append(array)
        fields.append(field)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _constant(value: Any, kind: pa.DataType, rows: int) -> pa.Array:
    """``value`` on ``rows`` rows, dictionary-encoded (one copy of it, however many rows):
    Parquet stores it as a plain column of ``kind`` either way, and writes it without hashing
    every row."""
    if value is None:
        return pa.nulls(rows, kind)
    indices = pa.array(np.zeros(rows, dtype=np.int32))
    return pa.DictionaryArray.from_arrays(indices, pa.array([value], kind))


def conformer(schema: TableSchema, lineage: Lineage | None) -> Conform:
    """``conform`` bound to one table and one input's lineage."""
    return lambda table: conform(table, schema, lineage)


def rewrite_parquet(data: bytes, schema: TableSchema, write: Callable[[pa.Table], bytes]) -> bytes:
    """A Parquet file's bytes again, cast to ``schema`` (``write`` serializes the result);
    the same bytes when the file already has ``schema``."""
    reader = pa.BufferReader(data)
    current = pq.read_schema(reader)
    if current.remove_metadata().equals(arrow_schema(schema)):
        return data
    table = pq.read_table(pa.BufferReader(data))
    return write(conform(table, schema, None))


def parquet_bytes(table: pa.Table, compression: str | None) -> bytes:
    """``table`` as a table's Parquet file, the way the writers write one."""
    from shared.transform.writers import write_arrow

    sink = io.BytesIO()
    write_arrow(table, "parquet", sink, compression=compression, table_file=True)
    return sink.getvalue()
