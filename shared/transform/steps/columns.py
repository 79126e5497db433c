"""Column-shaping steps: select, drop, rename, normalize_columns."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

import pandas as pd

from shared.errors import TransformError

_CAMEL_RE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_NON_WORD_RE = re.compile(r"[^0-9a-zA-Z]+")


def require_columns(df: pd.DataFrame, names: Iterable[str]) -> None:
    """Raise ``TransformError`` listing the names ``df`` lacks (and what it has)."""
    missing = [name for name in names if name not in df.columns]
    if missing:
        available = ", ".join(map(str, df.columns))
        raise TransformError(f"unknown column(s): {', '.join(missing)} (available: {available})")


def select(df: pd.DataFrame, *, columns: list[str]) -> pd.DataFrame:
    """Keep only ``columns``, in that order."""
    require_columns(df, columns)
    return df.loc[:, list(columns)]


def drop(df: pd.DataFrame, *, columns: list[str]) -> pd.DataFrame:
    """Remove ``columns``."""
    require_columns(df, columns)
    return df.drop(columns=list(columns))


def rename(df: pd.DataFrame, *, columns: dict[str, str]) -> pd.DataFrame:
    """Rename ``{old: new}``; a resulting duplicate name is an error."""
    require_columns(df, columns)
    new_names = [columns.get(name, name) for name in df.columns]
    duplicates = sorted({name for name in new_names if new_names.count(name) > 1})
    if duplicates:
        raise TransformError(f"rename would create duplicate column(s): {', '.join(duplicates)}")
    return df.rename(columns=columns)


def snake_case(name: object, *, strip_accents: bool = True) -> str:
    """``"Unit Price (€)"`` → ``"unit_price"``, ``"OrderID"`` → ``"order_id"``."""
    text = str(name).strip()
    if strip_accents:
        decomposed = unicodedata.normalize("NFKD", text)
        text = "".join(char for char in decomposed if not unicodedata.combining(char))
        text = _NON_WORD_RE.sub("_", _CAMEL_RE.sub("_", text))
    else:
        text = re.sub(r"\W+", "_", _CAMEL_RE.sub("_", text))
    return text.strip("_").lower()


def normalize_columns(df: pd.DataFrame, *, strip_accents: bool = True) -> pd.DataFrame:
    """snake_case names; empty → ``column_<position>``; duplicates get ``_2``, ``_3``."""
    from shared.transform.readers.sniff import dedupe_names

    names = [
        snake_case(name, strip_accents=strip_accents) or f"column_{position}"
        for position, name in enumerate(df.columns, start=1)
    ]
    result = df.copy(deep=False)
    result.columns = dedupe_names(names)
    return result
