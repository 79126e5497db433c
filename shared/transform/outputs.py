"""Rendered outputs: one transformed frame → complete temporary files, each with its final key.

Nothing is uploaded here: the run uploads an input's outputs only once all of them rendered,
so a failing input never leaves part of its outputs behind.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, cast

from shared.errors import DrivepipeError
from shared.storage import layout

if TYPE_CHECKING:
    import pandas as pd

    from shared.config import Pipeline
    from shared.transform.tables.conform import Tables

SPOOL_BYTES = 32 * 1024 * 1024


@dataclass
class RenderedOutput:
    """One output object, complete on local disk, not yet uploaded."""

    key: str
    body: BinaryIO
    size: int


def compression(value: str | None) -> str | None:
    """The writer's compression argument for a configured one (``"none"`` means none)."""
    return None if value in (None, "none") else value


def render_frame(
    pipeline: Pipeline,
    frame: pd.DataFrame,
    relpath: str,
    sheet: str | None,
    stack: ExitStack,
    *,
    tables: Tables | None = None,
) -> list[RenderedOutput]:
    """Serialize one transformed frame (split into partitions) into temporary files.

    With ``tables`` the frame goes to its table (``<table>/<partitions>/<flat name>``), cast to
    the table's schema; without, to ``<partitions>/<path>[/<sheet>]`` as it is.
    """
    from shared.transform.writers import extension, write_table

    output = pipeline.output
    codec = compression(output.compression)
    ext = extension(output.format, codec)
    target = tables.prepare(sheet, frame) if tables is not None else None
    rendered: list[RenderedOutput] = []
    for partition, part in _partitions(frame, output.partition_by):
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115
        body = cast(BinaryIO, stack.enter_context(spool))
        if target is None:
            size = write_table(part, output.format, body, compression=codec)
            key = layout.output_key(relpath, ext, sheet=sheet, partition=partition)
        else:
            size = write_table(part, output.format, body, compression=codec, conform=target.conform)
            key = layout.table_output_key(target.table, relpath, ext, partition=partition)
        body.seek(0)
        rendered.append(RenderedOutput(key=key, body=body, size=size))
    return rendered


def _partitions(
    frame: pd.DataFrame, columns: Sequence[str]
) -> Iterator[tuple[list[tuple[str, str]], pd.DataFrame]]:
    if not columns:
        yield [], frame
        return
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DrivepipeError(f"partition column(s) not in the data: {', '.join(missing)}")
    from shared.transform.writers import split_partitions

    yield from split_partitions(frame, list(columns))
