"""Custom steps: a user function ``(df, **params) -> DataFrame`` named by a dotted path.

Which modules may provide one is checked when the config is loaded
(``settings.custom_step_modules``, :meth:`shared.config.PipelineFile.custom_step_problems`).
Here, whatever the caller, a function is refused when it is, or is reached through, something
of the standard library or of a refused package: ``my_pkg.mod:os.system`` or a
``from subprocess import run`` re-exported by an allowed module never runs.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import types
from collections.abc import Callable
from typing import Any

import pandas as pd

from shared.config import module_refusal
from shared.errors import TransformError


def _refusal(target: Any) -> str | None:
    """Why ``target`` (a module or routine or class) may not be a custom step, else ``None``."""
    if isinstance(target, types.ModuleType):
        return module_refusal(target.__name__) or f"{target.__name__!r} is a module"
    if inspect.isroutine(target) or inspect.isclass(target):
        module = getattr(target, "__module__", None)
        if isinstance(module, str):
            return module_refusal(module)
    return None


@functools.cache
def load_custom(path: str) -> Callable[..., pd.DataFrame]:
    """Import ``"package.module:callable"`` or ``"package.module.callable"`` once (cached)."""
    if ":" in path:
        module_name, _, attribute = path.partition(":")
    else:
        module_name, _, attribute = path.rpartition(".")
    if not module_name or not attribute:
        raise TransformError(f"custom function {path!r} is not a 'package.module:callable' path")
    reason = module_refusal(module_name)
    if reason is None and any(part.startswith("__") for part in attribute.split(".")):
        reason = "dunder attributes are not followed"
    if reason:
        raise TransformError(f"custom function {path!r} is not allowed: {reason}")
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
        reason = _refusal(target)
        if reason:
            raise TransformError(f"custom function {path!r} is not allowed: {reason}")
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
