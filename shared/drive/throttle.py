"""Client-wide adaptive request pacing (AIMD): one rate-limit answer slows every thread down.

Drive's quota is per user (about 12,000 queries a minute), not per connection, so a 403
``userRateLimitExceeded`` seen by one worker means all workers are sending too fast. Backing
off only the request that failed lets the other threads keep burning the quota and collect
their own 403s. The limiter below is shared by every request of a DriveClient:

- It starts unlimited (no cost while Drive is happy).
- On a rate-limit answer it caps the send rate at ``decrease`` × the rate measured over the
  last second (or × the current cap), at most once per cap period, and every thread then
  waits for a token before sending, retries included.
- Each success raises the cap additively, by ``recovery`` of the rate at the last decrease
  (at least ``min_rate``) per second of successes, until it exceeds ``2 ×`` that rate and
  the cap is lifted again. The cap never drops below ``min_rate`` (10/s, 5% of the quota).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

WINDOW_S = 1.0


@dataclass
class ThrottleStats:
    """What the limiter did: decreases, the lowest cap, and seconds threads spent waiting."""

    decreases: int = 0
    lowest_rate: float | None = None
    waited_s: float = 0.0


class AdaptiveRateLimiter:
    """A shared token bucket whose rate follows AIMD on rate-limit answers. Thread-safe."""

    def __init__(
        self,
        *,
        max_rate: float | None = None,
        min_rate: float = 10.0,
        decrease: float = 0.5,
        recovery: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if max_rate is not None and max_rate <= 0:
            raise ValueError("max_rate must be positive")
        if not 0.0 < decrease < 1.0:
            raise ValueError("decrease must be within (0, 1)")
        if min_rate <= 0 or recovery <= 0:
            raise ValueError("min_rate and recovery must be positive")
        self.max_rate = max_rate
        self.min_rate = min_rate
        self.decrease = decrease
        self.recovery = recovery
        self.stats = ThrottleStats()
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._rate: float | None = max_rate  # None: unlimited
        self._tokens = 1.0
        self._refilled_at = clock()
        self._decreased_at = float("-inf")
        self._rate_at_decrease = max_rate or 0.0
        self._sent: deque[float] = deque()

    @property
    def rate(self) -> float | None:
        """The current cap in requests per second (None when unlimited)."""
        with self._lock:
            return self._rate

    def acquire(self) -> float:
        """Block until this request may be sent; returns its send time (pass it to on_*)."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                delay = self._take(now)
                if delay <= 0:
                    self._sent.append(now)
                    while self._sent and self._sent[0] < now - WINDOW_S:
                        self._sent.popleft()
                    self.stats.waited_s += waited
                    return now
            self._sleep(delay)
            waited += delay

    def _take(self, now: float) -> float:
        """Take a token if there is one (returns 0), else the seconds until there will be."""
        rate = self._rate
        if rate is None:
            return 0.0
        burst = max(1.0, rate * 0.05)  # at most 50 ms worth of requests at once
        self._tokens = min(burst, self._tokens + (now - self._refilled_at) * rate)
        self._refilled_at = now
        if self._tokens >= 1.0 - 1e-9:  # tolerance: the refill after a sleep may round down
            self._tokens = max(0.0, self._tokens - 1.0)
            return 0.0
        return (1.0 - self._tokens) / rate

    def on_rate_limited(self, sent_at: float) -> None:
        """A request sent at ``sent_at`` was rate-limited: cut the rate for every thread.

        Answers to requests sent before the last cut don't cut again: they were already in
        flight and say nothing about the new rate.
        """
        with self._lock:
            if sent_at <= self._decreased_at:
                return
            now = self._clock()
            measured = len([t for t in self._sent if t >= now - WINDOW_S]) / WINDOW_S
            base = self._rate if self._rate is not None else max(measured, self.min_rate)
            self._rate = max(self.min_rate, base * self.decrease)
            self._rate_at_decrease = base
            self._tokens = 0.0
            self._refilled_at = now
            self._decreased_at = now
            self.stats.decreases += 1
            lowest = self.stats.lowest_rate
            self.stats.lowest_rate = self._rate if lowest is None else min(lowest, self._rate)

    def on_success(self) -> None:
        """A request succeeded: raise the cap a little (additive increase)."""
        with self._lock:
            rate = self._rate
            if rate is None:
                return
            per_second = max(self.recovery * self._rate_at_decrease, self.min_rate)
            rate += per_second / rate
            if self.max_rate is not None:
                rate = min(rate, self.max_rate)
            elif rate > 2 * self._rate_at_decrease:
                self._rate = None  # well past the last limit: stop pacing
                return
            self._rate = rate
