"""A table column's type: a small vocabulary every engine reads alike, and how types widen.

Scalar types are names: ``bool``, ``int64``, ``float64``, ``string``, ``date``, ``timestamp``
(no zone), ``timestamp_tz`` (UTC) and ``decimal(p,s)``; nested ones are ``{"list": T}`` and
``{"struct": [[name, T], ...]}``. Every Arrow type a reader or step produces maps to one of them
(any integer width → ``int64``, any float → ``float64``, any time unit → microseconds, which
Athena, BigQuery and DuckDB all read); an all-null column has no type yet (``None``).

Widening follows the readers' ladder: ``int64 → float64 → string`` and
``date → timestamp → string``; any two other scalars meet at ``string``, which holds every
value. Nested types widen to nothing but themselves.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from shared.transform.tables.options import DECIMAL, parse_type

__all__ = ["ColumnType", "describe", "from_arrow", "hive_type", "parse_type", "to_arrow", "widen"]
ColumnType = Any  # str | {"list": ColumnType} | {"struct": [[name, ColumnType], ...]}

_LADDERS = (("int64", "float64", "string"), ("date", "timestamp", "string"))
_HIVE = {
    "bool": "boolean",
    "int64": "bigint",
    "float64": "double",
    "string": "string",
    "date": "date",
    "timestamp": "timestamp",
    "timestamp_tz": "timestamp",
}


def from_arrow(kind: pa.DataType) -> ColumnType | None:
    """The table type of an Arrow type; ``None`` for the null type. ValueError if it has none."""
    if pa.types.is_null(kind):
        return None
    if pa.types.is_dictionary(kind):
        return from_arrow(kind.value_type)
    if pa.types.is_boolean(kind):
        return "bool"
    if pa.types.is_integer(kind):
        return "int64"
    if pa.types.is_floating(kind):
        return "float64"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "string"
    if getattr(pa.types, "is_string_view", lambda _k: False)(kind):
        return "string"
    if pa.types.is_date(kind):
        return "date"
    if pa.types.is_timestamp(kind):
        return "timestamp_tz" if kind.tz else "timestamp"
    if pa.types.is_decimal(kind):
        return f"decimal({kind.precision},{kind.scale})"
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return {"list": from_arrow(kind.value_type) or "string"}
    if pa.types.is_struct(kind):
        fields = [kind.field(i) for i in range(kind.num_fields)]
        return {"struct": [[f.name, from_arrow(f.type) or "string"] for f in fields]}
    raise ValueError(f"{kind} has no table type; cast the column to a plain type in a step")


def to_arrow(column_type: ColumnType) -> pa.DataType:
    """The Arrow type every file of a table stores for ``column_type``."""
    if isinstance(column_type, dict):
        if "list" in column_type:
            return pa.list_(to_arrow(column_type["list"]))
        return pa.struct([pa.field(name, to_arrow(inner)) for name, inner in column_type["struct"]])
    simple = {
        "bool": pa.bool_(),
        "int64": pa.int64(),
        "float64": pa.float64(),
        "string": pa.string(),
        "date": pa.date32(),
        "timestamp": pa.timestamp("us"),
        "timestamp_tz": pa.timestamp("us", tz="UTC"),
    }
    if column_type in simple:
        return simple[column_type]
    match = DECIMAL.match(str(column_type))
    if match:
        return pa.decimal128(int(match.group(1)), int(match.group(2)))
    raise ValueError(f"unknown column type {column_type!r}")


def widen(current: ColumnType, incoming: ColumnType) -> ColumnType | None:
    """The narrowest type that holds both (``current`` when it already does); ``None`` when no
    rule allows it (nested types that differ, or a nested and a scalar type)."""
    if current == incoming:
        return current
    if isinstance(current, dict) or isinstance(incoming, dict):
        return None
    for ladder in _LADDERS:
        if current in ladder and incoming in ladder:
            return ladder[max(ladder.index(current), ladder.index(incoming))]
    return "string"


def hive_type(column_type: ColumnType) -> str:
    """The Glue / Hive DDL type: ``bigint``, ``array<string>``, ``struct<a:double>``..."""
    if isinstance(column_type, dict):
        if "list" in column_type:
            return f"array<{hive_type(column_type['list'])}>"
        inner = ",".join(f"{name}:{hive_type(kind)}" for name, kind in column_type["struct"])
        return f"struct<{inner}>"
    if column_type in _HIVE:
        return _HIVE[column_type]
    return str(column_type)  # decimal(p,s)


def describe(column_type: ColumnType | None) -> str:
    """A type as people read it in messages and ``drivepipe schema show``."""
    if column_type is None:
        return "unknown (all null)"
    return hive_type(column_type) if isinstance(column_type, dict) else str(column_type)
