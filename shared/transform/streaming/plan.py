"""Which steps can run batch by batch, and a clear refusal for those that cannot."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from shared.errors import TransformError
from shared.transform.steps.incremental import DECOMPOSABLE, undecomposable
from shared.transform.steps.specs import GroupbyStep, Step
from shared.transform.streaming.options import StreamingOptions

WHOLE_TABLE_OPS = frozenset({"groupby", "sort", "dedupe", "custom"})

IndexedStep = tuple[int, Step]


@dataclass(frozen=True)
class StreamPlan:
    """Row-wise steps run per batch, then an optional incremental groupby, then the steps
    after it, which run in memory on the (small) aggregate."""

    row_steps: list[IndexedStep] = field(default_factory=list)
    groupby: tuple[int, GroupbyStep] | None = None
    after: list[IndexedStep] = field(default_factory=list)


def describe_size(size: int) -> str:
    """``2_100_000_000`` → ``"2.1 GB"``; ``300_000_000`` → ``"300 MB"``."""
    return f"{size / 1e9:.1f} GB" if size >= 1e9 else f"{size / 1e6:.0f} MB"


def plan_steps(steps: Sequence[Step], size: int, options: StreamingOptions) -> StreamPlan:
    """Split ``steps`` for streaming; raise ``TransformError`` naming a step that can't stream."""
    row_steps: list[IndexedStep] = []
    for index, step in enumerate(steps):
        if step.op not in WHOLE_TABLE_OPS:
            row_steps.append((index, step))
            continue
        if isinstance(step, GroupbyStep):
            bad = undecomposable(dict(step.aggs))
            if not bad:
                after = [(i, s) for i, s in enumerate(steps) if i > index]
                return StreamPlan(row_steps, (index, step), after)
            reason = (
                f"aggregation(s) {', '.join(bad)} need the whole table (streamed groupby "
                f"supports {', '.join(DECOMPOSABLE)})"
            )
        else:
            reason = "needs the whole table"
        raise TransformError(
            f"step {index} ({step.op}) {reason}; input is {describe_size(size)}, above "
            f"streaming.threshold_mb={options.threshold_mb:g} — raise the threshold or drop "
            "the step"
        )
    return StreamPlan(row_steps)
