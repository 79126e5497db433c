"""The step registry and ``apply_steps``, which runs validated steps in order."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from shared import deadline
from shared.errors import TransformError
from shared.transform.steps import columns, rows
from shared.transform.steps.cast import cast_columns
from shared.transform.steps.custom import run_custom
from shared.transform.steps.specs import Step

REGISTRY: dict[str, Callable[..., pd.DataFrame]] = {
    "select": columns.select,
    "drop": columns.drop,
    "rename": columns.rename,
    "normalize_columns": columns.normalize_columns,
    "cast": cast_columns,
    "filter": rows.filter_rows,
    "replace": rows.replace,
    "fillna": rows.fillna,
    "dropna": rows.dropna,
    "dedupe": rows.dedupe,
    "derive": rows.derive,
    "groupby": rows.groupby,
    "sort": rows.sort,
    "limit": rows.limit,
    "custom": run_custom,
}
_WHOLE_TABLE_OPS = frozenset({"groupby", "sort", "dedupe", "custom"})


@dataclass(frozen=True)
class StepStat:
    """What one step did: rows in and out, wall time."""

    op: str
    rows_in: int
    rows_out: int
    seconds: float


def register(op: str, function: Callable[..., pd.DataFrame]) -> None:
    """Register an implementation under ``op`` (its spec must exist in ``specs``)."""
    REGISTRY[op] = function


def needs_whole_table(step: Step) -> bool:
    """True when a step's result depends on all rows at once (groupby, sort, dedupe, custom),
    so it cannot run chunk by chunk."""
    return step.op in _WHOLE_TABLE_OPS


def step_params(step: Step) -> dict[str, Any]:
    """The keyword arguments a step's function receives: every spec field except ``op``."""
    return {name: getattr(step, name) for name in type(step).model_fields if name != "op"}


def apply_steps(df: pd.DataFrame, steps: Sequence[Step]) -> tuple[pd.DataFrame, list[StepStat]]:
    """Run ``steps`` in order; ``df`` is never modified. A failure raises ``TransformError``
    prefixed with the step's index and op."""
    stats: list[StepStat] = []
    for index, step in enumerate(steps):
        df, stat = apply_step(df, step, index)
        stats.append(stat)
    return df, stats


def apply_step(df: pd.DataFrame, step: Step, index: int) -> tuple[pd.DataFrame, StepStat]:
    """Run one step (``index`` is its position in the pipeline, used in error messages).

    Checks the function's time first (:func:`shared.deadline.check`): a step is where a big
    input's time goes, whole or batch by batch."""
    deadline.check()
    started = time.perf_counter()
    try:
        result = REGISTRY[step.op](df, **step_params(step))
    except TransformError as exc:
        raise TransformError(f"step {index} ({step.op}): {exc}") from exc
    except Exception as exc:
        raise TransformError(f"step {index} ({step.op}): {type(exc).__name__}: {exc}") from exc
    return result, StepStat(step.op, len(df), len(result), time.perf_counter() - started)
