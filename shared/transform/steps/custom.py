"""Custom steps: a user function ``(df, **params) -> DataFrame`` named by a dotted path."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any

import pandas as pd

from shared.errors import TransformError


@functools.cache
def load_custom(path: str) -> Callable[..., pd.DataFrame]:
    """Import ``"package.module:callable"`` or ``"package.module.callable"`` once (cached)."""
    if ":" in path:
        module_name, _, attribute = path.partition(":")
    else:
        module_name, _, attribute = path.rpartition(".")
    if not module_name or not attribute:
        raise TransformError(f"custom function {path!r} is not a 'package.module:callable' path")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise TransformError(
            f"custom function {path!r}: cannot import {module_name!r}: {exc}"
        ) from None
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise TransformError(
                f"custom function {path!r}: module {module_name!r} has no attribute {part!r}"
            ) from None
    if not callable(target):
        raise TransformError(f"custom function {path!r} is not callable")
    return target


def run_custom(df: pd.DataFrame, *, function: str, params: dict[str, Any]) -> pd.DataFrame:
    """Call the custom function on a shallow copy, so even in-place code leaves ``df`` intact."""
    result = load_custom(function)(df.copy(deep=False), **params)
    if not isinstance(result, pd.DataFrame):
        raise TransformError(
            f"custom function {function!r} returned {type(result).__name__}, not a DataFrame"
        )
    return result
