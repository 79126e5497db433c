"""One bound on Drive requests in flight, shared by listing and downloads (listing first).

A sync lists and downloads at once (:mod:`shared.run.prefetch`): the walk's threads and the
download threads send through one :class:`RequestSlots`, so the pipeline's ``concurrency`` is
the most requests it ever has open against Drive, whatever the mix. A request holds its slot
from before it is sent until its body has been read (a download's whole stream); retries wait
for their backoff without one. Listing requests go first when slots are short: they discover
the work, and a walk that waits behind downloads delays every decision that needs the whole
listing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class RequestSlots:
    """At most ``limit`` requests in flight across every thread. Thread-safe.

    ``urgent`` requests (listing, metadata) are served before the others (downloads) whenever
    both wait. ``max_in_use`` is the most slots ever held at once, for tests and benchmarks.
    """

    def __init__(self, limit: int):
        if limit < 1:
            raise ValueError("the in-flight limit must be at least 1")
        self.limit = limit
        self.max_in_use = 0
        self._in_use = 0
        self._urgent_waiting = 0
        self._cond = threading.Condition()

    @property
    def in_use(self) -> int:
        """Slots held right now."""
        with self._cond:
            return self._in_use

    @contextmanager
    def held(self, *, urgent: bool) -> Iterator[None]:
        """Hold one slot for the duration of the block, waiting for one if all are taken."""
        with self._cond:
            if urgent:
                self._urgent_waiting += 1
            try:
                while self._in_use >= self.limit or (not urgent and self._urgent_waiting):
                    self._cond.wait()
            finally:
                if urgent:
                    self._urgent_waiting -= 1
                    self._cond.notify_all()  # others held back for it may go now
            self._in_use += 1
            self.max_in_use = max(self.max_in_use, self._in_use)
        try:
            yield
        finally:
            with self._cond:
                self._in_use -= 1
                self._cond.notify_all()
