"""Outputs written in another ``output.layout``: the next run fetches their inputs again and
writes them in the pipeline's layout; the old keys go once the new ones are written (as any
output an input no longer produces), so the move loses and duplicates nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.storage import layout

if TYPE_CHECKING:
    from shared.config import Pipeline
    from shared.run.state import InputState


def _table_key(pipeline: Pipeline, entry: InputState, key: str) -> bool:
    depth = len(pipeline.output.partition_by)
    if not layout.is_table_output(key, pipeline.name, depth):
        return False
    leaf = key.rsplit("/", 1)[-1]
    name = layout.flat_name(entry.output_path or entry.path)
    return leaf.startswith(name) and leaf[len(name) :].startswith(".")


def in_layout(pipeline: Pipeline, entry: InputState) -> bool:
    """True when ``entry``'s outputs are where the pipeline's layout puts them (or it has none)."""
    if entry.error or not entry.output_keys:
        return True
    table = [_table_key(pipeline, entry, key) for key in entry.output_keys]
    return all(table) if pipeline.output.layout == "table" else not any(table)
