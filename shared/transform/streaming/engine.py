"""The streaming render: batches → row-wise steps → sinks (or an incremental groupby).

Everything is written to temporary files owned by one attempt; only a complete attempt hands
its files to the caller, so a failure in a late batch leaves no output behind. A schema drift
restarts the input with the wider types, and a row longer than the block with bigger blocks
(see ``batches``); an abandoned attempt's files are discarded with it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Iterator
from contextlib import ExitStack
from typing import TYPE_CHECKING, BinaryIO

import pandas as pd
import pyarrow as pa

from shared import deadline
from shared.errors import ReadError, TransformError
from shared.log import get_logger
from shared.storage import layout
from shared.transform.outputs import RenderedOutput, compression, render_frame
from shared.transform.steps.incremental import IncrementalGroupby
from shared.transform.steps.runner import apply_step
from shared.transform.streaming import input_size
from shared.transform.streaming.batches import LongRow, SchemaDrift, StreamHints
from shared.transform.streaming.csv_source import CsvLayout, csv_frames, head_types, sniff_layout
from shared.transform.streaming.jsonl_source import jsonl_frames
from shared.transform.streaming.plan import StreamPlan, describe_size, plan_steps
from shared.transform.streaming.sinks import PartitionedSinks, Sink, make_sink
from shared.transform.writers import extension

if TYPE_CHECKING:
    from shared.config import Pipeline
    from shared.run.manifest import InputRecord
    from shared.transform.tables.conform import Tables, Target

MAX_ATTEMPTS = 12  # type/encoding restarts; bigger-block restarts end at max_row_bytes
log = get_logger("streaming")


def stream_render(
    pipeline: Pipeline,
    data: BinaryIO,
    fmt: str,
    relpath: str,
    record: InputRecord,
    stack: ExitStack,
    *,
    tables: Tables | None = None,
) -> list[RenderedOutput]:
    """Like ``render.render`` for one big CSV/TSV/JSON Lines input, in bounded memory.

    With ``tables`` every batch is cast to the input's table; a later batch that needs more of
    the table than the first ones (a column with values only further down) starts the input
    over, as a type drift does.
    """
    size = input_size(data)
    plan = plan_steps(pipeline.steps, size, pipeline.streaming)
    log.info("streaming input", extra={"path": relpath, "size": describe_size(size)})
    layout = None
    hints = StreamHints()
    if fmt in ("csv", "tsv"):
        options = pipeline.read.csv
        delimiter = "\t" if fmt == "tsv" else None
        layout = sniff_layout(data, options, delimiter, pipeline.read.max_columns)
        types = head_types(data, options, layout, pipeline.streaming.infer_bytes)
        hints = StreamHints(column_types=types)
    drifts = 0
    while drifts < MAX_ATTEMPTS:
        with ExitStack() as attempt:  # files of an attempt that restarts are discarded with it
            run = _Run(pipeline, plan, relpath, attempt, tables, hints)
            frames = _frames(pipeline, data, layout, hints)
            try:
                outputs = run.execute(frames)
            except LongRow as long_row:
                why = {"path": relpath, "why": str(long_row)}
                log.info("restarting with bigger blocks", extra=why)
                hints = long_row.hints
                continue
            except SchemaDrift as drift:
                log.info("restarting with wider types", extra={"path": relpath, "why": str(drift)})
                hints = drift.hints
                drifts += 1
                continue
            finally:
                frames.close()  # stops the reader now, not whenever it is garbage-collected
            stack.enter_context(attempt.pop_all())
        record.rows_in, record.rows_out = run.rows_in, run.rows_out
        record.steps.extend(run.step_stats())
        return outputs
    raise ReadError(f"column types kept changing after {MAX_ATTEMPTS} re-reads; cast at the source")


def _frames(
    pipeline: Pipeline, data: BinaryIO, layout: CsvLayout | None, hints: StreamHints
) -> Generator[pd.DataFrame, None, None]:
    options = pipeline.streaming
    sizes = {
        "block_bytes": options.block_bytes,
        "max_row_bytes": options.max_row_bytes,
        "batch_rows": options.batch_rows,
    }
    if layout is not None:
        return csv_frames(data, pipeline.read.csv, layout, hints, **sizes)
    return jsonl_frames(
        data, pipeline.read.json, hints, max_columns=pipeline.read.max_columns, **sizes
    )


class _Run:
    """One attempt at one input: counts rows per step and owns the output sinks."""

    def __init__(
        self,
        pipeline: Pipeline,
        plan: StreamPlan,
        relpath: str,
        stack: ExitStack,
        tables: Tables | None = None,
        hints: StreamHints | None = None,
    ):
        self.pipeline = pipeline
        self.plan = plan
        self.relpath = relpath
        self.stack = stack
        self.tables = tables
        self.hints = hints or StreamHints()
        self.target: Target | None = None
        self.rows_in = self.rows_out = 0
        self._stats: dict[int, list[int]] = {}  # step index → [rows in, rows out]
        self._left = {i: s.n for i, s in plan.row_steps if s.op == "limit"}  # type: ignore[union-attr]

    def execute(self, frames: Iterator[pd.DataFrame]) -> list[RenderedOutput]:
        """Drive every batch through the plan; returns the finished outputs."""
        if self.plan.groupby is not None:
            return self._aggregate(frames)
        output = self.pipeline.output
        codec = compression(output.compression)
        options = self.pipeline.streaming

        def conform(table: pa.Table) -> pa.Table:
            assert self.target is not None
            return self.target.conform(table)

        def new_sink() -> Sink:
            return make_sink(
                output.format,
                codec,
                self.stack,
                buffer_rows=options.batch_rows,
                conform=conform if self.tables is not None else None,
            )

        columns = list(output.partition_by)
        target: Sink | PartitionedSinks = (
            PartitionedSinks(
                columns,
                new_sink,
                max_partitions=options.max_partitions,
                buffer_rows=options.batch_rows,
            )
            if columns
            else new_sink()
        )
        for frame in frames:
            deadline.check()  # between batches: the function's time, for steps or none
            result = self._row_steps(frame)
            self._fit_table(result)
            self.rows_out += len(result)
            target.write(result)
        if self.tables is not None and self.target is None:
            self.target = self.tables.prepare(None, pd.DataFrame())
        ext = extension(output.format, codec)
        if isinstance(target, Sink):
            key = self._key(ext, ())
            return [RenderedOutput(key=key, body=target.body, size=target.close())]
        rendered = [
            RenderedOutput(key=self._key(ext, labels), body=sink.body, size=sink.close())
            for labels, sink in target.sinks.items()
        ]
        return sorted(rendered, key=lambda out: out.key)

    def _fit_table(self, frame: pd.DataFrame) -> None:
        """Cast to the input's table; restart when a batch needs more of it than the first."""
        if self.tables is None:
            return
        if self.target is None:
            self.target = self.tables.prepare(None, frame)
        elif self.tables.grows(self.target.table, frame):
            raise SchemaDrift(self.hints, "a later batch widens the table")

    def _key(self, ext: str, labels: tuple[tuple[str, str], ...]) -> str:
        if self.target is not None:
            return layout.table_output_key(self.target.table, self.relpath, ext, partition=labels)
        return layout.output_key(self.relpath, ext, partition=list(labels))

    def _aggregate(self, frames: Iterator[pd.DataFrame]) -> list[RenderedOutput]:
        assert self.plan.groupby is not None
        index, step = self.plan.groupby
        with _step_errors(index, step.op):
            aggregator = IncrementalGroupby(
                list(step.by), dict(step.aggs), compact_rows=self.pipeline.streaming.batch_rows
            )
        for frame in frames:
            deadline.check()
            result = self._row_steps(frame)
            with _step_errors(index, step.op):
                aggregator.add(result)
        with _step_errors(index, step.op):
            grouped = aggregator.result()
        self._count(index, aggregator.rows_in, len(grouped))
        for after_index, after in self.plan.after:
            rows = len(grouped)
            grouped, _ = apply_step(grouped, after, after_index)
            self._count(after_index, rows, len(grouped))
        self.rows_out = len(grouped)
        return render_frame(
            self.pipeline, grouped, self.relpath, None, self.stack, tables=self.tables
        )

    def _row_steps(self, frame: pd.DataFrame) -> pd.DataFrame:
        self.rows_in += len(frame)
        for index, step in self.plan.row_steps:
            rows = len(frame)
            if index in self._left:  # a limit counts rows across batches
                frame, _ = apply_step(
                    frame, step.model_copy(update={"n": self._left[index]}), index
                )
                self._left[index] -= len(frame)
            else:
                frame, _ = apply_step(frame, step, index)
            self._count(index, rows, len(frame))
        return frame

    def _count(self, index: int, rows_in: int, rows_out: int) -> None:
        counts = self._stats.setdefault(index, [0, 0])
        counts[0] += rows_in
        counts[1] += rows_out

    def step_stats(self) -> list[dict[str, object]]:
        """Per-step row counts summed over batches, in the manifest's shape."""
        steps = self.pipeline.steps
        return [
            {"op": steps[i].op, "rows_in": n_in, "rows_out": n_out, "table": None}
            for i, (n_in, n_out) in sorted(self._stats.items())
        ]


@contextlib.contextmanager
def _step_errors(index: int, op: str) -> Iterator[None]:
    """Prefix a ``TransformError`` with the step, as ``apply_step`` does."""
    try:
        yield
    except TransformError as exc:
        raise TransformError(f"step {index} ({op}): {exc}") from exc
