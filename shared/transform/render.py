"""One input's bytes → tables → transformed frames → rendered outputs, in memory or streamed.

Big CSV/TSV/JSON Lines inputs (above ``pipeline.streaming.threshold_mb``) stream in batches
(:mod:`shared.transform.streaming.engine`); everything else is read whole.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import TYPE_CHECKING, BinaryIO

from shared import deadline
from shared.transform.outputs import RenderedOutput, render_frame
from shared.transform.streaming import should_stream

if TYPE_CHECKING:
    from shared.config import Pipeline
    from shared.run.manifest import InputRecord
    from shared.transform.tables.conform import Tables


def render(
    pipeline: Pipeline,
    data: BinaryIO,
    fmt: str,
    relpath: str,
    record: InputRecord,
    stack: ExitStack,
    *,
    tables: Tables | None = None,
) -> list[RenderedOutput]:
    """Read, transform and serialize one input; fills row counts and step stats in ``record``.

    ``tables`` (``output.layout = "table"``) casts each output to its table's schema.
    """
    if should_stream(pipeline, data, fmt):
        from shared.transform.streaming.engine import stream_render

        return stream_render(pipeline, data, fmt, relpath, record, stack, tables=tables)

    from shared.transform.readers import read_table
    from shared.transform.steps.runner import apply_steps

    rendered: list[RenderedOutput] = []
    rows_in = rows_out = 0
    data.seek(0)
    for table in read_table(data, fmt, pipeline.read):
        deadline.check()  # reading may have taken the input's time (steps check again)
        frame, stats = apply_steps(table.frame, list(pipeline.steps))
        rows_in += len(table.frame)
        rows_out += len(frame)
        record.steps.extend(
            {"op": s.op, "rows_in": s.rows_in, "rows_out": s.rows_out, "table": table.name}
            for s in stats
        )
        rendered.extend(render_frame(pipeline, frame, relpath, table.name, stack, tables=tables))
    record.rows_in, record.rows_out = rows_in, rows_out
    return rendered
