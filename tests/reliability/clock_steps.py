"""A custom step that spends the function's time on a fake clock: as many seconds as the
table's ``seconds`` column adds up to. The tests build deadlines on :data:`CLOCK`, so how much
of the invocation each input takes is exact, and nothing sleeps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class FakeClock:
    """A monotonic clock that moves only when told to."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


CLOCK = FakeClock()


def spend(df: Any) -> Any:
    """Pass the table through, after spending ``sum(df.seconds)`` of :data:`CLOCK`."""
    if "seconds" in df.columns:
        CLOCK.advance(float(df["seconds"].sum()))
    return df
