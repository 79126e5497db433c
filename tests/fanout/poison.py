"""A custom step that crashes the worker on one marked file (simulates OOM or a segfault).

It raises a ``BaseException`` subclass, which neither the transform runner nor
``process_input`` treats as a bad input, so the worker itself fails and the queue redelivers.
"""

from __future__ import annotations

from typing import Any


class SimulatedCrash(BaseException):
    """The worker died while processing this file."""


def crash_on_marker(df: Any) -> Any:
    """Pass every table through, except one with a ``poison`` column: crash."""
    if "poison" in df.columns:
        raise SimulatedCrash("worker died on the poison file")
    return df
