"""Each built-in step, asserting values; every step leaves its input untouched."""

from __future__ import annotations

import datetime
import decimal

import pandas as pd
import pytest

from shared.errors import TransformError
from shared.transform.steps.custom import load_custom
from shared.transform.steps.runner import apply_steps, needs_whole_table
from shared.transform.steps.specs import validate_steps
from tests.transforms import custom_steps
from tests.transforms.helpers import records, snapshot


def run(df: pd.DataFrame, *steps: dict) -> pd.DataFrame:
    """Validate step dicts, apply them, and check the input was not modified."""
    before = snapshot(df)
    result, stats = apply_steps(df, validate_steps(list(steps)))
    assert snapshot(df) == before, "a step mutated its input"
    assert [stat.op for stat in stats] == [step["op"] for step in steps]
    assert stats[-1].rows_out == len(result)
    return result


def test_select_orders_columns(sales: pd.DataFrame) -> None:
    out = run(sales, {"op": "select", "columns": ["product", "id"]})
    assert list(out.columns) == ["product", "id"]
    assert out["product"].tolist() == ["apple", "pear", "apple pie", "kiwi", "pear", "grape"]


def test_select_unknown_column_names_it(sales: pd.DataFrame) -> None:
    with pytest.raises(TransformError, match=r"step 0 \(select\): unknown column\(s\): nope"):
        run(sales, {"op": "select", "columns": ["id", "nope"]})


def test_cast_unknown_column_names_it_and_the_available_ones(sales: pd.DataFrame) -> None:
    expected = r"step 0 \(cast\): unknown column\(s\): Units"
    with pytest.raises(TransformError, match=expected) as info:
        run(sales, {"op": "cast", "columns": {"Units": "int64"}})
    assert "available: id, region, product, units" in str(info.value)


def test_drop_and_rename(sales: pd.DataFrame) -> None:
    out = run(
        sales,
        {"op": "drop", "columns": ["comment", "unit_price"]},
        {"op": "rename", "columns": {"units": "qty"}},
    )
    assert list(out.columns) == ["id", "region", "product", "qty"]
    assert out["qty"].tolist()[:3] == [3, 10, 0]


def test_rename_refuses_duplicate_result(sales: pd.DataFrame) -> None:
    with pytest.raises(TransformError, match="duplicate column"):
        run(sales, {"op": "rename", "columns": {"units": "id"}})


def test_normalize_columns_snake_case_unique_and_filled() -> None:
    df = pd.DataFrame(
        [[1, 2, 3, 4, 5, 6]], columns=["Unit Price (€)", "OrderID", "Région", "", "a", "A"]
    )
    out = run(df, {"op": "normalize_columns"})
    assert list(out.columns) == ["unit_price", "order_id", "region", "column_4", "a", "a_2"]
    assert out.iloc[0].tolist() == [1, 2, 3, 4, 5, 6]
    kept = run(df, {"op": "normalize_columns", "strip_accents": False})
    assert list(kept.columns)[2] == "région"


def test_cast_converts_values(sales: pd.DataFrame) -> None:
    df = pd.DataFrame(
        {
            "n": ["1", " 2 ", None],
            "f": ["1.5", "2", "-3e2"],
            "b": ["yes", "False", "1"],
            "d": ["2024-01-05", "2024-02-29", None],
            "t": ["2024-01-05T10:30:00", "2024-01-06T00:00:00", "2024-01-07T23:59:59"],
            "m": ["10.006", "3", "-7.1"],
            "s": [1, 2, 3],
        }
    )
    out = run(
        df,
        {
            "op": "cast",
            "columns": {
                "n": "int64",
                "f": "float64",
                "b": "bool",
                "d": "date",
                "t": "datetime",
                "m": "decimal(10,2)",
                "s": "string",
            },
        },
    )
    assert str(out["n"].dtype) == "int64[pyarrow]"
    assert records(out[["n"]]) == [{"n": 1}, {"n": 2}, {"n": None}]
    assert out["f"].tolist() == [1.5, 2.0, -300.0]
    assert out["b"].tolist() == [True, False, True]
    assert out["d"].tolist()[:2] == [datetime.date(2024, 1, 5), datetime.date(2024, 2, 29)]
    assert out["t"].iloc[0] == pd.Timestamp("2024-01-05 10:30:00")
    assert str(out["m"].dtype) == "decimal128(10, 2)[pyarrow]"
    assert out["m"].tolist() == [
        decimal.Decimal("10.01"),
        decimal.Decimal("3.00"),
        decimal.Decimal("-7.10"),
    ]
    assert out["s"].tolist() == ["1", "2", "3"]


def test_cast_error_names_column_first_bad_value_and_row() -> None:
    df = pd.DataFrame({"units": ["1", "2", "three", "4.5"]})
    with pytest.raises(TransformError) as caught:
        run(df, {"op": "cast", "columns": {"units": "int64"}})
    message = str(caught.value)
    assert "step 0 (cast)" in message
    assert "column 'units'" in message
    assert "'three'" in message and "row 2" in message
    assert "2 bad value(s)" in message  # "three" and 4.5 (not a whole number)


def test_cast_errors_null_turns_bad_values_into_nulls() -> None:
    df = pd.DataFrame({"units": ["1", "x", "3"], "day": ["2024-01-01", "nope", None]})
    out = run(df, {"op": "cast", "columns": {"units": "int64", "day": "date"}, "errors": "null"})
    assert records(out) == [
        {"units": 1, "day": datetime.date(2024, 1, 1)},
        {"units": None, "day": None},
        {"units": 3, "day": None},
    ]


def test_cast_decimal_out_of_precision_is_an_error() -> None:
    df = pd.DataFrame({"amount": ["12.5", "123456.7"]})
    with pytest.raises(TransformError, match=r"'123456\.7'"):
        run(df, {"op": "cast", "columns": {"amount": "decimal(5,2)"}})


def test_filter_between_and_str_contains(sales: pd.DataFrame) -> None:
    out = run(sales, {"op": "filter", "expr": "units.between(1, 7)"})
    assert out["id"].tolist() == [1, 4, 5]  # null units dropped, 0 and 10 outside
    out = run(sales, {"op": "filter", "expr": 'product.str.contains("pp")'})
    assert out["product"].tolist() == ["apple", "apple pie"]
    out = run(sales, {"op": "filter", "expr": 'region == "US" and unit_price > 2.5'})
    assert out["id"].tolist() == [6]


def test_filter_bad_expression_names_it(sales: pd.DataFrame) -> None:
    with pytest.raises(TransformError, match=r"step 0 \(filter\).*'no_such_col > 1'"):
        run(sales, {"op": "filter", "expr": "no_such_col > 1"})
    with pytest.raises(TransformError, match="not true/false"):
        run(sales, {"op": "filter", "expr": "units + 1"})


def test_derive_adds_column(sales: pd.DataFrame) -> None:
    out = run(sales, {"op": "derive", "column": "revenue", "expr": "units * unit_price"})
    assert records(out[["revenue"]]) == [
        {"revenue": 4.5},
        {"revenue": 20.0},
        {"revenue": 0.0},
        {"revenue": 3.5},
        {"revenue": 10.0},
        {"revenue": None},
    ]


def test_replace_values_in_one_column(sales: pd.DataFrame) -> None:
    out = run(sales, {"op": "replace", "column": "region", "values": {"EU": "Europe"}})
    assert out["region"].tolist()[:4] == ["Europe", "US", "Europe", "APAC"]
    assert out["product"].tolist()[0] == "apple"


def test_replace_values_everywhere() -> None:
    df = pd.DataFrame({"a": ["n/a", "x"], "b": ["y", "n/a"]})
    out = run(df, {"op": "replace", "values": {"n/a": "missing"}})
    assert out.to_dict("list") == {"a": ["missing", "x"], "b": ["y", "missing"]}


def test_replace_regex_values_and_pattern(sales: pd.DataFrame) -> None:
    out = run(
        sales, {"op": "replace", "column": "product", "values": {"^ap.*": "A"}, "regex": True}
    )
    assert out["product"].tolist()[:3] == ["A", "pear", "A"]
    out = run(
        sales,
        {"op": "replace", "column": "product", "pattern": r"p(\w)", "replacement": r"P\1"},
    )
    assert out["product"].tolist()[:3] == ["aPple", "Pear", "aPple Pie"]


def test_fillna_scalar_and_per_column(sales: pd.DataFrame) -> None:
    out = run(sales, {"op": "fillna", "values": {"region": "unknown", "units": 0}})
    assert out["region"].tolist()[4] == "unknown"
    assert out["units"].tolist()[5] == 0
    only_text = run(sales[["region"]], {"op": "fillna", "values": "?"})
    assert only_text["region"].tolist() == ["EU", "US", "EU", "APAC", "?", "US"]


def test_fillna_wrong_type_names_column(sales: pd.DataFrame) -> None:
    with pytest.raises(TransformError, match="column 'units'"):
        run(sales, {"op": "fillna", "values": {"units": "lots"}})


def test_dropna_any_all_subset() -> None:
    df = pd.DataFrame({"a": [1, None, None], "b": [1, 2, None]}).convert_dtypes(
        dtype_backend="pyarrow"
    )
    assert run(df, {"op": "dropna"})["b"].tolist() == [1]
    assert run(df, {"op": "dropna", "how": "all"})["b"].tolist() == [1, 2]
    assert run(df, {"op": "dropna", "subset": ["b"]})["b"].tolist() == [1, 2]


def test_dedupe_keep_variants() -> None:
    df = pd.DataFrame({"k": ["a", "b", "a", "c", "a"], "v": [1, 2, 3, 4, 5]})
    assert run(df, {"op": "dedupe", "subset": ["k"]})["v"].tolist() == [1, 2, 4]
    assert run(df, {"op": "dedupe", "subset": ["k"], "keep": "last"})["v"].tolist() == [2, 4, 5]
    assert run(df, {"op": "dedupe", "subset": ["k"], "keep": "none"})["v"].tolist() == [2, 4]
    whole_rows = pd.DataFrame({"k": ["a", "a", "a"], "v": [1, 1, 2]})
    assert run(whole_rows, {"op": "dedupe"})["v"].tolist() == [1, 2]


def test_groupby_named_aggregations(sales: pd.DataFrame) -> None:
    out = run(
        sales,
        {
            "op": "groupby",
            "by": ["region"],
            "aggs": {
                "total_units": ["units", "sum"],
                "orders": {"column": "id", "agg": "count"},
                "products": ["product", "nunique"],
                "max_price": ["unit_price", "max"],
                "avg_price": ["unit_price", "mean"],
                "first_id": ["id", "first"],
                "last_id": ["id", "last"],
            },
        },
    )
    rows = {row["region"]: row for row in records(out)}
    assert set(rows) == {"APAC", "EU", "US", None}  # null region is its own group
    assert rows["EU"] == {
        "region": "EU",
        "total_units": 3,
        "orders": 2,
        "products": 2,
        "max_price": 4.25,
        "avg_price": 2.875,
        "first_id": 1,
        "last_id": 3,
    }
    assert rows["US"]["total_units"] == 10  # the null units of id 6 are skipped
    assert rows["US"]["orders"] == 2


def test_groupby_median_std_min() -> None:
    df = pd.DataFrame({"g": ["a", "a", "a", "b"], "x": [1.0, 2.0, 6.0, 5.0]})
    out = run(
        df,
        {
            "op": "groupby",
            "by": ["g"],
            "aggs": {"med": ["x", "median"], "sd": ["x", "std"], "lo": ["x", "min"]},
        },
    )
    assert out["med"].tolist() == [2.0, 5.0]
    assert out["sd"].iloc[0] == pytest.approx(2.6457513, rel=1e-6)
    assert pd.isna(out["sd"].iloc[1])
    assert out["lo"].tolist() == [1.0, 5.0]


def test_sort_and_limit(sales: pd.DataFrame) -> None:
    out = run(
        sales,
        {"op": "sort", "by": ["region", "unit_price"], "ascending": [True, False]},
        {"op": "limit", "n": 4},
    )
    assert out["id"].tolist() == [4, 3, 1, 6]
    assert list(out.index) == [0, 1, 2, 3]
    by_units = run(sales, {"op": "sort", "by": ["units"], "ascending": False})
    assert by_units["id"].tolist() == [2, 4, 5, 1, 3, 6]  # null last
    assert run(sales, {"op": "limit", "n": 0}).empty


def test_custom_step_from_dotted_paths(sales: pd.DataFrame) -> None:
    base = {"op": "derive", "column": "revenue", "expr": "units * unit_price"}
    out = run(
        sales,
        base,
        {
            "op": "custom",
            "function": "tests.transforms.custom_steps:add_margin",
            "params": {"rate": 0.5},
        },
    )
    assert records(out[["margin"]])[:2] == [{"margin": 2.25}, {"margin": 10.0}]
    assert custom_steps.CALLS[-1] == {"rate": 0.5, "column": "margin"}
    doubled = run(
        sales,
        {
            "op": "custom",
            "function": "tests.transforms.custom_steps:Namespace.double",
            "params": {"column": "id"},
        },
    )
    assert doubled["id"].tolist() == [2, 4, 6, 8, 10, 12]


def test_custom_step_dot_form_and_caching() -> None:
    first = load_custom("tests.transforms.custom_steps.add_margin")
    assert first is custom_steps.add_margin
    assert load_custom("tests.transforms.custom_steps.add_margin") is first


def test_custom_step_cannot_mutate_input(sales: pd.DataFrame) -> None:
    out = run(sales, {"op": "custom", "function": "tests.transforms.custom_steps:mutate_in_place"})
    assert out["revenue"].tolist() == [0] * 6
    assert "extra" not in sales.columns


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("tests.transforms.no_such_module:f", "cannot import"),
        ("tests.transforms.custom_steps:missing", "has no attribute 'missing'"),
        ("tests.transforms.custom_steps:CALLS", "not callable"),
        ("tests.transforms.custom_steps:not_a_frame", "returned int, not a DataFrame"),
        ("subprocess:run", "not allowed: 'subprocess' is in the standard library"),
        ("os.system", "not allowed: 'os' is in the standard library"),
        ("tests.transforms.custom_steps:pd.read_csv", "not allowed: 'pandas' is a library"),
        ("tests.transforms.custom_steps:reexported_run", "not allowed: 'subprocess' is in the"),
        ("tests.transforms.custom_steps:add_margin.__globals__", "dunder attributes"),
    ],
)
def test_custom_step_errors(sales: pd.DataFrame, path: str, message: str) -> None:
    with pytest.raises(TransformError, match=message):
        run(sales, {"op": "custom", "function": path})


def test_stats_and_error_index(sales: pd.DataFrame) -> None:
    steps = validate_steps(
        [
            {"op": "filter", "expr": "units > 2"},
            {"op": "limit", "n": 2},
            {"op": "select", "columns": ["x"]},
        ]
    )
    with pytest.raises(TransformError, match=r"^step 2 \(select\)"):
        apply_steps(sales, steps)
    result, stats = apply_steps(sales, steps[:2])
    assert [(s.op, s.rows_in, s.rows_out) for s in stats] == [("filter", 6, 4), ("limit", 4, 2)]
    assert all(s.seconds >= 0 for s in stats)
    assert result["id"].tolist() == [1, 2]


def test_needs_whole_table() -> None:
    steps = validate_steps(
        [
            {"op": "filter", "expr": "a > 1"},
            {"op": "sort", "by": ["a"]},
            {"op": "groupby", "by": ["a"], "aggs": {"n": ["b", "count"]}},
            {"op": "dedupe"},
            {"op": "derive", "column": "c", "expr": "a + 1"},
        ]
    )
    assert [needs_whole_table(step) for step in steps] == [False, True, True, True, False]


def _numpy_backed(df: pd.DataFrame) -> pd.DataFrame:
    """The same values with numpy/object dtypes, which takes the plain-pandas code path."""
    return pd.DataFrame({name: df[name].astype(object) for name in df.columns})


def test_arrow_fast_paths_match_pandas(sales: pd.DataFrame) -> None:
    with_empty_group = pd.concat(
        [
            sales,
            pd.DataFrame({"region": ["MEA"], "id": [7]}).convert_dtypes(dtype_backend="pyarrow"),
        ],
        ignore_index=True,
    )
    steps = [
        {"op": "filter", "expr": "id > 1"},
        {
            "op": "groupby",
            "by": ["region"],
            "aggs": {
                "total": ["units", "sum"],
                "n": ["units", "count"],
                "distinct": ["product", "nunique"],
                "avg": ["unit_price", "mean"],
                "lo": ["unit_price", "min"],
                "hi": ["id", "max"],
            },
        },
    ]
    fast = run(with_empty_group, *steps)
    slow = run(_numpy_backed(with_empty_group), *steps)
    assert all(isinstance(dtype, pd.ArrowDtype) for dtype in fast.dtypes)
    assert records(fast) == records(slow)
    assert records(fast)[-2:] == [
        {"region": "US", "total": 10, "n": 1, "distinct": 2, "avg": 2.5, "lo": 2.0, "hi": 6},
        {"region": None, "total": 5, "n": 1, "distinct": 1, "avg": 2.0, "lo": 2.0, "hi": 5},
    ]
    mea = next(row for row in records(fast) if row["region"] == "MEA")
    assert mea["total"] == 0 and mea["n"] == 0 and mea["avg"] is None  # all-null group


def test_arrow_filter_keeps_index_labels(sales: pd.DataFrame) -> None:
    out = run(sales, {"op": "filter", "expr": "units > 4"})
    assert list(out.index) == [1, 3, 4]
    assert out["id"].tolist() == [2, 4, 5]
    with pytest.raises(TransformError, match=r"row 3\b"):
        run(
            out.assign(units=out["units"].astype("string[pyarrow]").replace("7", "x")),
            {"op": "cast", "columns": {"units": "int64"}},
        )
