"""Steps that need the whole table: incremental groupby, and a clear refusal for the rest."""

from __future__ import annotations

import pandas as pd
import pytest

from shared.errors import TransformError
from shared.transform.steps.incremental import IncrementalGroupby
from shared.transform.steps.rows import groupby
from tests.streaming.conftest import both_ways, make_pipeline, run_render, sales_csv

NORMALIZE = {"op": "normalize_columns"}
AGGS = {
    "revenue": ["revenue", "sum"],
    "orders": ["id", "count"],
    "units_counted": ["units", "count"],
    "avg_units": ["units", "mean"],
    "cheapest": ["unit_price", "min"],
    "dearest": ["unit_price", "max"],
    "first_note": ["note", "first"],
    "last_day": ["day", "last"],
}


def test_streamed_groupby_equals_the_in_memory_groupby() -> None:
    steps = [
        NORMALIZE,
        {"op": "derive", "column": "revenue", "expr": "units * unit_price"},
        {"op": "groupby", "by": ["region_name"], "aggs": AGGS},
    ]
    streamed, in_memory = both_ways(steps, sales_csv(500))
    got, expected = streamed.frame(), in_memory.frame()
    pd.testing.assert_frame_equal(got, expected, check_dtype=False, check_exact=False, rtol=1e-12)
    assert got["region_name"].isna().iloc[-1]  # the null group, sorted last as in memory
    assert got["orders"].sum() == 500
    assert streamed.record.steps[-1] == {
        "op": "groupby",
        "rows_in": 500,
        "rows_out": 5,
        "table": None,
    }


def test_incremental_groupby_with_compaction_equals_pandas() -> None:
    frame = pd.DataFrame(
        {
            "k1": ["a", "b", None, "a", "c", "b", "a", None] * 25,
            "k2": [1, 1, 2, 2, 1, None, 1, 2] * 25,
            "v": [1.5, None, 3.0, 4.0, None, 6.0, 7.25, 8.0] * 25,
            "s": ["x", "y", None, "w", "v", None, "u", "t"] * 25,
        }
    ).convert_dtypes(dtype_backend="pyarrow")
    aggs = {
        "total": ("v", "sum"),
        "n": ("v", "count"),
        "avg": ("v", "mean"),
        "lo": ("v", "min"),
        "hi": ("s", "max"),
        "first_s": ("s", "first"),
        "last_v": ("v", "last"),
    }
    aggregator = IncrementalGroupby(["k1", "k2"], aggs, compact_rows=4)
    held = []
    for start in range(0, len(frame), 9):
        aggregator.add(frame.iloc[start : start + 9])
        held.append(aggregator.groups_held)
    expected = groupby(frame, by=["k1", "k2"], aggs=aggs)
    pd.testing.assert_frame_equal(
        aggregator.result(), expected, check_dtype=False, check_exact=False, rtol=1e-12
    )
    assert max(held) <= 4 + 9  # partials are merged, never piled up


def test_all_null_group_sums_to_zero_and_has_no_mean() -> None:
    frame = pd.DataFrame({"k": ["a", "a", "b"], "v": [None, None, 2.0]}).convert_dtypes(
        dtype_backend="pyarrow"
    )
    aggregator = IncrementalGroupby(["k"], {"s": ("v", "sum"), "m": ("v", "mean")}, compact_rows=1)
    aggregator.add(frame.iloc[:1])
    aggregator.add(frame.iloc[1:])
    result = aggregator.result()
    assert result["s"].tolist() == [0.0, 2.0]
    assert result["m"].isna().tolist() == [True, False]


def test_steps_after_a_groupby_run_on_the_aggregate() -> None:
    steps = [
        NORMALIZE,
        {"op": "groupby", "by": ["day"], "aggs": {"units": ["units", "sum"]}},
        {"op": "sort", "by": ["units"], "ascending": False},
        {"op": "limit", "n": 3},
    ]
    streamed, in_memory = both_ways(steps, sales_csv())
    pd.testing.assert_frame_equal(streamed.frame(), in_memory.frame(), check_dtype=False)
    assert len(streamed.frame()) == 3


@pytest.mark.parametrize(
    ("step", "reason"),
    [
        ({"op": "sort", "by": ["id"]}, "step 1 \\(sort\\) needs the whole table"),
        ({"op": "dedupe", "subset": ["id"]}, "step 1 \\(dedupe\\) needs the whole table"),
        (
            {"op": "custom", "function": "tests.transforms.custom_steps:add_margin"},
            "step 1 \\(custom\\) needs the whole table",
        ),
        (
            {"op": "groupby", "by": ["day"], "aggs": {"m": ["units", "median"]}},
            "step 1 \\(groupby\\) aggregation\\(s\\) median need the whole table",
        ),
    ],
)
def test_whole_table_steps_on_a_big_input_fail_naming_step_size_and_threshold(
    step: dict[str, object], reason: str
) -> None:
    pipeline = make_pipeline([{"op": "limit", "n": 5}, step], stream=True)
    with pytest.raises(TransformError, match=reason) as error:
        run_render(pipeline, sales_csv())
    assert "input is 0 MB, above streaming.threshold_mb=0" in str(error.value)
    assert "raise the threshold or drop the step" in str(error.value)


def test_groupby_sum_of_text_is_a_clear_error() -> None:
    steps = [{"op": "groupby", "by": ["day"], "aggs": {"s": ["note", "sum"]}}]
    with pytest.raises(TransformError, match="step 0 \\(groupby\\): column 'note' is string"):
        run_render(make_pipeline(steps, stream=True), sales_csv())
