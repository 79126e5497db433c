"""A table's schema, and what an input's columns do to it under the pipeline's contract.

:func:`reconcile` is pure: given the table as it stands (or ``None``), the columns an input
brings and the pipeline's options, it returns the table the input will be written as, the
changes that takes (for the history) and the columns left out; or raises
:class:`~shared.errors.ContractError` naming every column the contract refuses.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Any

from shared.errors import ContractError
from shared.transform.tables.options import LINEAGE_COLUMNS, SchemaOptions
from shared.transform.tables.types import ColumnType, describe, widen

LINEAGE_TYPES: dict[str, ColumnType] = {
    "_drive_id": "string",
    "_drive_path": "string",
    "_drive_modified_time": "timestamp_tz",
}


@dataclass(frozen=True)
class Column:
    """One column: its type, whether it may be null, declared in the config, or lineage."""

    name: str
    type: ColumnType
    nullable: bool = True
    declared: bool = False
    lineage: bool = False

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "type": self.type, "nullable": self.nullable}
        if self.declared:
            data["declared"] = True
        if self.lineage:
            data["lineage"] = True
        return data


@dataclass(frozen=True)
class TableSchema:
    """A table: its columns in file order, partition keys, version and history of changes."""

    name: str
    columns: tuple[Column, ...]
    partition_keys: tuple[str, ...] = ()
    version: int = 1
    history: tuple[dict[str, Any], ...] = ()

    def column(self, name: str) -> Column | None:
        """The column called ``name``, or ``None``."""
        return next((c for c in self.columns if c.name == name), None)

    @property
    def lineage(self) -> bool:
        """True when the table carries the lineage columns."""
        return any(c.lineage for c in self.columns)

    def fingerprint(self) -> str:
        """Names, types and order of the columns: equal fingerprints mean equal files."""
        shape = [[c.name, c.type] for c in self.columns]
        text = json.dumps([shape, list(self.partition_keys)], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "fingerprint": self.fingerprint(),
            "columns": [c.to_json() for c in self.columns],
            "partition_keys": list(self.partition_keys),
            "history": list(self.history),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TableSchema:
        columns = tuple(
            Column(
                c["name"],
                c["type"],
                c.get("nullable", True),
                c.get("declared", False),
                c.get("lineage", False),
            )
            for c in data["columns"]
        )
        return cls(
            data["name"],
            columns,
            tuple(data.get("partition_keys", ())),
            int(data.get("version", 1)),
            tuple(data.get("history", ())),
        )


@dataclass
class Outcome:
    """What one input does to a table: the table to write it as, the changes that takes (empty
    when the table already holds the input) and the columns left out, with why."""

    table: TableSchema
    changes: list[dict[str, Any]] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)


Observed = list[tuple[str, ColumnType | None]]  # an input's columns and their types, in order


def _fresh(
    name: str, options: SchemaOptions, partition_keys: tuple[str, ...]
) -> tuple[list[Column], list[dict[str, Any]]]:
    columns: list[Column] = []
    if options.lineage:
        columns += [Column(n, LINEAGE_TYPES[n], lineage=True) for n in LINEAGE_COLUMNS]
    for col_name, spec in options.columns.items():
        if col_name not in partition_keys:
            columns.append(Column(col_name, spec.type, spec.nullable, declared=True))
    return columns, [{"op": "create", "columns": [c.name for c in columns]}]


def reconcile(
    current: TableSchema | None,
    name: str,
    observed: Observed,
    options: SchemaOptions,
    partition_keys: tuple[str, ...] = (),
) -> Outcome:
    """The table ``observed`` (an input's columns) is written as, under ``options``' contract.

    A new table starts with the lineage and declared columns. An observed column with no type
    (all null) constrains nothing: it is cast to the table's type, or left out when the table
    does not have it. A declared column never widens. Raises ``ContractError`` listing every
    column the contract refuses.
    """
    contract = options.contract
    if current is None or current.lineage != options.lineage:
        columns, changes = _fresh(name, options, partition_keys)
        if current is not None:
            changes = [{**changes[0], "op": "reset", "why": "schema.lineage changed"}]
        base_version = current.version if current is not None else 0
        # A new table takes the first input's columns whatever the contract says.
        creating = True
    else:
        columns, changes = list(current.columns), []
        base_version = current.version
        creating = False
    index = {c.name: i for i, c in enumerate(columns)}
    problems: list[str] = []
    dropped: dict[str, str] = {}
    for col_name, kind in observed:
        if col_name in LINEAGE_TYPES and options.lineage:
            problems.append(
                f"column {col_name!r} is a lineage column name; rename it in a step or set "
                "schema.lineage = false"
            )
            continue
        at = index.get(col_name)
        if at is None:
            if kind is None:
                dropped[col_name] = "all null and not in the table (added once it has values)"
            elif creating:  # the first input makes the table, whatever the contract
                columns.append(Column(col_name, kind))
                index[col_name] = len(columns) - 1
            elif contract == "evolve":
                columns.append(Column(col_name, kind))
                index[col_name] = len(columns) - 1
                changes.append({"op": "add", "column": col_name, "type": kind})
            elif contract == "discard_columns":
                dropped[col_name] = "not in the table (contract discard_columns)"
            else:
                problems.append(f"new column {col_name!r} ({describe(kind)}) (contract freeze)")
            continue
        column = columns[at]
        if kind is None or kind == column.type:
            continue
        wider = widen(column.type, kind)
        if wider == column.type:
            continue  # the input's values fit the table's type: cast on write
        if wider is None:
            problems.append(
                f"column {col_name!r} is {describe(kind)} in this input, the table has "
                f"{describe(column.type)}: no rule widens one to the other"
            )
        elif column.declared:
            problems.append(
                f"column {col_name!r} is declared {describe(column.type)} in schema.columns; "
                f"this input has {describe(kind)}"
            )
        elif contract != "evolve" and not creating:
            problems.append(
                f"column {col_name!r} would widen from {describe(column.type)} to "
                f"{describe(wider)} (contract {contract})"
            )
        else:
            columns[at] = replace(column, type=wider)
            if not creating:
                changes.append(
                    {"op": "widen", "column": col_name, "from": column.type, "to": wider}
                )
    if not creating:  # a column declared since the table was made: the config says so
        for col_name, spec in options.columns.items():
            if col_name not in index and col_name not in partition_keys:
                columns.append(Column(col_name, spec.type, spec.nullable, declared=True))
                index[col_name] = len(columns) - 1
                changes.append({"op": "add", "column": col_name, "type": spec.type})
    if problems:
        raise ContractError(f"table {name}: " + "; ".join(problems))
    if creating:
        changes[0]["columns"] = [c.name for c in columns]
    if not changes:
        assert current is not None
        return Outcome(current, [], dropped)
    table = TableSchema(name, tuple(columns), partition_keys, base_version + 1, ())
    return Outcome(table, changes, dropped)
