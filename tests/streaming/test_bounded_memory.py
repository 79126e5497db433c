"""Memory does not grow with the input: no stage ever holds more than ``batch_rows`` rows.

Checked by counting rows at each stage (a counting wrapper), not by measuring RSS or time;
``python -m bench.memory`` measures the real peak RSS on files up to 2 GB.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

import shared.transform.streaming.engine as engine
from shared.transform.streaming.sinks import Sink
from tests.streaming.conftest import BATCH_ROWS, make_pipeline, run_render, sales_csv

STEPS = [
    {"op": "normalize_columns"},
    {"op": "filter", "expr": "units >= 0"},
    {"op": "derive", "column": "revenue", "expr": "units * unit_price"},
]


def spy_rows(monkeypatch: pytest.MonkeyPatch) -> tuple[list[int], list[int]]:
    """Record rows entering every step and every sink write."""
    step_rows: list[int] = []
    sink_rows: list[int] = []
    real_apply, real_flush = engine.apply_step, Sink.flush

    def counting_apply(df: pd.DataFrame, *args: Any) -> Any:
        step_rows.append(len(df))
        return real_apply(df, *args)

    def counting_flush(self: Sink) -> None:
        sink_rows.append(self.buffered_rows)
        real_flush(self)

    monkeypatch.setattr(engine, "apply_step", counting_apply)
    monkeypatch.setattr(Sink, "flush", counting_flush)
    return step_rows, sink_rows


@pytest.mark.parametrize("rows", [300, 3000])
def test_no_stage_holds_more_than_batch_rows_whatever_the_input_size(
    rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    step_rows, sink_rows = spy_rows(monkeypatch)
    streaming = {"batch_rows": 50, "block_mb": 0.008}
    result = run_render(make_pipeline(STEPS, stream=True, streaming=streaming), sales_csv(rows))
    assert result.record.rows_in == rows
    assert max(step_rows) <= 50
    assert max(sink_rows) <= 50
    assert len(step_rows) >= 3 * rows // 50  # every step saw every batch
    assert sum(sink_rows) >= rows * 10 // 11  # and nearly all rows reached the writer


def test_the_in_memory_path_by_contrast_holds_the_whole_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import shared.transform.steps.runner as runner

    seen: list[int] = []
    real = runner.apply_step

    def counting_apply(df: pd.DataFrame, *args: Any) -> Any:
        seen.append(len(df))
        return real(df, *args)

    monkeypatch.setattr(runner, "apply_step", counting_apply)
    run_render(make_pipeline(STEPS, stream=False), sales_csv(300))
    assert max(seen) == 300  # the counter does see whole tables when they exist


def test_partitioned_sinks_flush_together_once_batch_rows_are_buffered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, sink_rows = spy_rows(monkeypatch)
    pipeline = make_pipeline(STEPS, stream=True, partition_by=["region_name"])
    result = run_render(pipeline, sales_csv(600))
    assert len(result.outputs) == 5
    assert max(sink_rows) <= BATCH_ROWS
    assert sum(sink_rows) == result.record.rows_out


def test_streamed_groupby_holds_partials_not_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.transform.steps.incremental import IncrementalGroupby

    held: list[int] = []
    real_add = IncrementalGroupby.add

    def counting_add(self: IncrementalGroupby, frame: pd.DataFrame) -> None:
        real_add(self, frame)
        held.append(self.groups_held)

    monkeypatch.setattr(IncrementalGroupby, "add", counting_add)
    steps = [*STEPS, {"op": "groupby", "by": ["day"], "aggs": {"n": ["id", "count"]}}]
    result = run_render(make_pipeline(steps, stream=True), sales_csv(2000))
    assert len(held) >= 2000 // BATCH_ROWS
    groups = len(result.frame())
    assert groups == 28
    assert max(held) <= 2 * groups + BATCH_ROWS  # merged partials + one batch, not 2000 rows
    assert result.record.rows_in == 2000
    assert result.frame()["n"].sum() == result.record.steps[1]["rows_out"]  # after the filter
