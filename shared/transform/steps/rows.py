"""Row and value steps: filter, derive, replace, fillna, dropna, dedupe, sort, limit, groupby."""

from __future__ import annotations

from typing import Any

import pandas as pd

from shared.errors import TransformError
from shared.transform.steps import fastpath
from shared.transform.steps.columns import require_columns


def _as_mask(result: object, expr: str, length: int) -> pd.Series:
    if not isinstance(result, pd.Series) or len(result) != length:
        raise TransformError(f"filter expression {expr!r} did not produce one value per row")
    if not pd.api.types.is_bool_dtype(result.dtype):
        raise TransformError(
            f"filter expression {expr!r} produced {result.dtype} values, not true/false"
        )
    if result.hasnans:  # a null comparison (null > 3) keeps nothing, like SQL's WHERE
        result = result.fillna(False)
    return result


def filter_rows(df: pd.DataFrame, *, expr: str) -> pd.DataFrame:
    """Keep rows where ``expr`` (pandas query syntax, Python engine) is true; null → dropped."""
    try:
        result = df.eval(expr, engine="python")
    except Exception as exc:
        raise TransformError(
            f"filter expression {expr!r} failed: {type(exc).__name__}: {exc}"
        ) from None
    mask = _as_mask(result, expr, len(df))
    fast = fastpath.arrow_filter(df, mask)
    return fast if fast is not None else df.loc[mask]


def derive(df: pd.DataFrame, *, column: str, expr: str) -> pd.DataFrame:
    """Add or replace ``column`` with the value of a ``DataFrame.eval`` expression."""
    try:
        value = df.eval(expr, engine="python")
    except Exception as exc:
        raise TransformError(
            f"derive expression {expr!r} failed: {type(exc).__name__}: {exc}"
        ) from None
    if isinstance(value, pd.DataFrame):
        raise TransformError(f"derive expression {expr!r} must give one value per row, not a table")
    return df.assign(**{column: value})


def replace(
    df: pd.DataFrame,
    *,
    column: str | None = None,
    values: dict[str, Any] | None = None,
    regex: bool = False,
    pattern: str | None = None,
    replacement: str = "",
) -> pd.DataFrame:
    """Replace whole values (``values``; keys are regexes when ``regex``) or substitute a
    ``pattern`` inside string cells; in ``column`` or in every column."""
    targets = [column] if column is not None else list(df.columns)
    require_columns(df, targets)
    updated: dict[str, pd.Series] = {}
    for name in targets:
        series = df[name]
        if pattern is not None:
            if not _is_text(series):
                if column is not None:
                    raise TransformError(f"column {name!r} is {series.dtype}, not text")
                continue
            updated[name] = series.str.replace(pattern, replacement, regex=True)
        else:
            assert values is not None
            if regex and not _is_text(series):
                continue
            updated[name] = series.replace(values, regex=regex)
    return df.assign(**updated) if updated else df.copy(deep=False)


def _is_text(series: pd.Series) -> bool:
    if series.dtype == object:
        return bool(series.map(lambda v: v is None or isinstance(v, str)).all())
    return pd.api.types.is_string_dtype(series.dtype)


def fillna(df: pd.DataFrame, *, values: dict[str, Any] | Any) -> pd.DataFrame:
    """Fill nulls with one value, or per column with ``{column: value}``."""
    if isinstance(values, dict):
        require_columns(df, values)
        filled = {}
        for name, value in values.items():
            try:
                filled[name] = df[name].fillna(value)
            except (TypeError, ValueError) as exc:
                raise TransformError(
                    f"column {name!r}: cannot fill {df[name].dtype} nulls with {value!r}: {exc}"
                ) from None
        return df.assign(**filled)
    try:
        return df.fillna(values)
    except (TypeError, ValueError) as exc:
        raise TransformError(f"cannot fill nulls with {values!r}: {exc}") from None


def dropna(df: pd.DataFrame, *, subset: list[str] | None = None, how: str = "any") -> pd.DataFrame:
    """Drop rows with a null (``how="any"``) or only nulls (``"all"``) in ``subset``."""
    if subset:
        require_columns(df, subset)
    return df.dropna(subset=subset, how=how)


def dedupe(
    df: pd.DataFrame, *, subset: list[str] | None = None, keep: str = "first"
) -> pd.DataFrame:
    """Drop duplicate rows; ``keep`` first, last, or none of each duplicate group."""
    if subset:
        require_columns(df, subset)
    return df.drop_duplicates(subset=subset, keep=False if keep == "none" else keep)


def sort(df: pd.DataFrame, *, by: list[str], ascending: bool | list[bool] = True) -> pd.DataFrame:
    """Stable sort by ``by`` (nulls last); the index is renumbered."""
    require_columns(df, by)
    return df.sort_values(
        by, ascending=ascending, kind="stable", na_position="last", ignore_index=True
    )


def limit(df: pd.DataFrame, *, n: int) -> pd.DataFrame:
    """Keep the first ``n`` rows."""
    return df.iloc[:n]


def groupby(df: pd.DataFrame, *, by: list[str], aggs: dict[str, Any]) -> pd.DataFrame:
    """Group by ``by`` (nulls form their own group) and compute named aggregations.

    ``aggs`` maps output name to an object/dict with ``column`` and ``agg``.
    """
    named = {out: agg_pair(spec) for out, spec in aggs.items()}
    require_columns(df, [*by, *(column for column, _ in named.values())])
    fast = fastpath.arrow_groupby(df, by, named)
    if fast is not None:
        return fast
    try:
        grouped = df.groupby(by, dropna=False, sort=True, observed=True)
        return grouped.agg(
            **{out: pd.NamedAgg(c, a) for out, (c, a) in named.items()}
        ).reset_index()
    except (TypeError, ValueError, NotImplementedError) as exc:
        raise TransformError(f"groupby aggregation failed: {type(exc).__name__}: {exc}") from None


def agg_pair(spec: Any) -> tuple[str, str]:
    """(column, aggregation) from a groupby spec given as a model, a dict or a pair."""
    if isinstance(spec, dict):
        return spec["column"], spec["agg"]
    if isinstance(spec, (tuple, list)):
        return spec[0], spec[1]
    return spec.column, spec.agg
