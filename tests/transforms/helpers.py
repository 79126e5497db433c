"""Helpers shared by the transform-area tests."""

from __future__ import annotations

import pandas as pd


def snapshot(frame: pd.DataFrame) -> tuple[list[str], list[str], list[object], str]:
    """Columns, dtypes, index and values, to prove a step left its input alone."""
    return (
        [str(name) for name in frame.columns],
        [str(dtype) for dtype in frame.dtypes],
        list(frame.index),
        frame.to_csv(index=False),
    )


def records(frame: pd.DataFrame) -> list[dict[str, object]]:
    """Rows as dicts with nulls as None (pd.NA does not compare with ==)."""
    return [
        {key: (None if _is_null(value) else value) for key, value in row.items()}
        for row in frame.to_dict("records")
    ]


def _is_null(value: object) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False
