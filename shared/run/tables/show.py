"""``drivepipe schema show|diff``: a pipeline's tables, their columns and their history."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shared.run.tables.store import SchemaDoc
from shared.storage import layout
from shared.transform.tables.types import describe

if TYPE_CHECKING:
    from shared.transform.tables.schema import TableSchema


def describe_change(change: dict[str, Any]) -> str:
    """One history change as a line: ``added discount float64``, ``widened price ...``."""
    op = change.get("op")
    if op == "add":
        return f"added {change['column']} {describe(change['type'])}"
    if op == "widen":
        return f"widened {change['column']} {describe(change['from'])} → {describe(change['to'])}"
    if op in ("create", "reset"):
        why = f" ({change['why']})" if change.get("why") else ""
        return f"{'created' if op == 'create' else 'reset'}{why}: {', '.join(change['columns'])}"
    return str(change)


def show_lines(doc: SchemaDoc, base_url: str) -> list[str]:
    """The document as text: per table its location, columns, partition keys and history."""
    if not doc.tables:
        return [f"pipeline {doc.pipeline}: no table yet (nothing written in this layout)"]
    lines = []
    for table in sorted(doc.tables.values(), key=lambda t: t.name):
        location = f"{base_url.rstrip('/')}/{layout.table_dir(table.name)}"
        lines.append(f"table {table.name}  version {table.version}  {location}")
        width = max(len(c.name) for c in table.columns) if table.columns else 0
        for column in table.columns:
            tags = [
                t for t, on in (("lineage", column.lineage), ("declared", column.declared)) if on
            ]
            if not column.nullable:
                tags.append("not null")
            suffix = f"  ({', '.join(tags)})" if tags else ""
            lines.append(f"  {column.name:<{width}}  {describe(column.type)}{suffix}")
        for key in table.partition_keys:
            lines.append(f"  {key:<{width}}  string  (partition)")
        lines.append("  history:")
        lines += [f"    {line}" for line in history_lines(table, 0, table.version)]
    return lines


def history_lines(table: TableSchema, after: int, upto: int) -> list[str]:
    """The changes of versions ``after`` < v <= ``upto``, one line each."""
    lines = []
    for entry in table.history:
        version = int(entry.get("version", 0))
        if after < version <= upto:
            head = f"v{version} {entry.get('at', '')} run {entry.get('run_id', '')}"
            head += f" input {entry.get('input', '')}"
            lines.append(head)
            lines += [f"  {describe_change(c)}" for c in entry.get("changes", [])]
    return lines


def diff_lines(doc: SchemaDoc, since: int | None, upto: int | None) -> list[str]:
    """What changed in each table between two versions (default: its last change)."""
    lines = []
    for table in sorted(doc.tables.values(), key=lambda t: t.name):
        end = table.version if upto is None else upto
        start = end - 1 if since is None else since
        lines.append(f"table {table.name}: v{start} → v{end}")
        changes = history_lines(table, start, end)
        lines += [f"  {line}" for line in changes] or ["  (no change)"]
    return lines or [f"pipeline {doc.pipeline}: no table yet"]
