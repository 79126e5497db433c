"""Tiny custom steps loaded by dotted path in the tests."""

from __future__ import annotations

import pandas as pd

CALLS: list[dict[str, object]] = []


def add_margin(df: pd.DataFrame, *, rate: float = 0.1, column: str = "margin") -> pd.DataFrame:
    """Add ``column`` = revenue × rate (a new frame)."""
    CALLS.append({"rate": rate, "column": column})
    return df.assign(**{column: df["revenue"] * rate})


def mutate_in_place(df: pd.DataFrame) -> pd.DataFrame:
    """Badly behaved: writes into the frame it was given."""
    df["revenue"] = 0
    df["extra"] = 1
    return df


def not_a_frame(df: pd.DataFrame) -> int:
    """Returns the wrong type."""
    return len(df)


class Namespace:
    """Holds a step reachable as ``custom_steps:Namespace.double``."""

    @staticmethod
    def double(df: pd.DataFrame, *, column: str) -> pd.DataFrame:
        return df.assign(**{column: df[column] * 2})


# An allowed module that happens to re-export something dangerous: never reachable as a step.
from subprocess import run as reexported_run  # noqa: E402, F401
