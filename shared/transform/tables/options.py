"""``[pipelines.x.schema]``: declared columns, the evolution contract and lineage columns.

Pandas- and pyarrow-free: part of the config, loaded at cold start. The type names are
:mod:`shared.transform.tables.types`' vocabulary.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Contract = Literal["evolve", "freeze", "discard_columns"]
LINEAGE_COLUMNS = ("_drive_id", "_drive_path", "_drive_modified_time")
SCALARS = ("bool", "int64", "float64", "string", "date", "timestamp", "timestamp_tz")
ALIASES = {
    "boolean": "bool",
    "int": "int64",
    "integer": "int64",
    "bigint": "int64",
    "float": "float64",
    "double": "float64",
    "str": "string",
    "text": "string",
    "datetime": "timestamp",
    "timestamptz": "timestamp_tz",
}
DECIMAL = re.compile(r"^decimal\(\s*(\d+)\s*,\s*(\d+)\s*\)$")


def parse_type(text: str) -> str:
    """A declared type name (``"float64"``, ``"datetime"``, ``"decimal(10,2)"``) in canonical
    form; ``ValueError`` naming the known ones."""
    name = ALIASES.get(text.strip().lower(), text.strip().lower())
    if name in SCALARS:
        return name
    match = DECIMAL.match(name)
    if match:
        precision, scale = int(match.group(1)), int(match.group(2))
        if not 1 <= precision <= 38 or scale > precision:
            raise ValueError(f"{text!r}: decimal needs precision 1-38 and scale <= precision")
        return f"decimal({precision},{scale})"
    known = ", ".join((*SCALARS, "decimal(p,s)"))
    raise ValueError(f"unknown column type {text!r} (known: {known})")


class ColumnSpec(BaseModel):
    """One declared column: its type, and whether it may hold nulls."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    nullable: bool = True

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        return parse_type(value)


class SchemaOptions(BaseModel):
    """How a pipeline's table is typed and may change (``output.layout = "table"`` only).

    ``columns`` fixes those columns' types (they never widen) and puts them first, in order;
    other columns are inferred from the first input that has them, which creates the table.
    ``contract`` says what later inputs may do: ``evolve`` adds new columns and widens types
    (rewriting existing outputs); ``freeze`` fails an input that would change the table;
    ``discard_columns`` drops new columns (the manifest says which) and fails an input that
    would widen a type. ``lineage`` adds ``_drive_id``, ``_drive_path`` and
    ``_drive_modified_time`` to every row.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    columns: dict[str, ColumnSpec] = Field(default_factory=dict)
    contract: Contract = "evolve"
    lineage: bool = True

    @field_validator("columns", mode="before")
    @classmethod
    def _shorthand(cls, value: object) -> object:
        """``price = "float64"`` is short for ``price = { type = "float64" }``."""
        if isinstance(value, dict):
            return {k: {"type": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

    @field_validator("columns")
    @classmethod
    def _names(cls, value: dict[str, ColumnSpec]) -> dict[str, ColumnSpec]:
        for name in value:
            if not name:
                raise ValueError("a column name must not be empty")
            if name in LINEAGE_COLUMNS:
                raise ValueError(f"{name} is a lineage column; turn schema.lineage off to use it")
        return value
