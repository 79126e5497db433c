"""The emulator's ordered change log, and page tokens into it.

`DiskTree.refresh` hands every full walk to `ChangeLog.observe`, which compares each id's state
with the previous walk and appends one change per id that was added, changed or removed. Page
tokens are decimal positions in the log, like Drive's: a token means "changes from here on".
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass

from devstack.drive_emulator.errors import ApiError


@dataclass(frozen=True)
class LoggedChange:
    """One entry of the log: `seq` is its position, `time` RFC 3339 when it was noticed."""

    seq: int
    file_id: str
    removed: bool
    time: str


def now_rfc3339() -> str:
    """The current UTC time, RFC 3339 with milliseconds, as Drive writes it."""
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + (
        f".{ns // 10**6 % 1000:03d}Z"
    )


def invalid_token() -> ApiError:
    """What the emulator answers for an unknown or expired changes token (see README)."""
    return ApiError(400, "invalid", "Invalid Value", location="pageToken")


class ChangeLog:
    """Append-only log of changes with increasing sequence numbers; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._log: list[LoggedChange] = []
        self._seqs: list[int] = []
        self._latest: dict[str, int] = {}  # file id -> seq of its latest change
        self._state: dict[str, Hashable] | None = None  # None until the first walk
        self._head = 1  # seq the next change gets; the start token is str(head)
        self._floor = 1  # tokens below this have expired
        # Called with the number of changes each walk appended (outside the lock): the
        # notification channels (watch.py) listen here.
        self.listeners: list[Callable[[int], None]] = []

    def observe(self, states: Iterable[tuple[str, Hashable]]) -> int:
        """Record what changed since the last walk; the first walk is the baseline.

        `states` gives (id, state) for every entry in walk order; an id whose state differs, or
        that is new, gets a change; an id no longer present gets a removal. Returns how many
        changes were appended.
        """
        new = dict(states)
        with self._lock:
            old, self._state = self._state, new
            if old is None:
                return 0
            stamp = now_rfc3339()
            changed = [fid for fid, state in new.items() if old.get(fid) != state]
            gone = [fid for fid in old if fid not in new]
            for fid in changed:
                self._append(fid, False, stamp)
            for fid in gone:
                self._append(fid, True, stamp)
        count = len(changed) + len(gone)
        if count:
            for listener in list(self.listeners):
                listener(count)
        return count

    def _append(self, file_id: str, removed: bool, stamp: str) -> None:
        change = LoggedChange(self._head, file_id, removed, stamp)
        self._log.append(change)
        self._seqs.append(change.seq)
        self._latest[file_id] = change.seq
        self._head += 1

    def start_token(self) -> str:
        """The token for "now": a list from it shows only later changes."""
        with self._lock:
            return str(self._head)

    def expire(self) -> str:
        """Make every token issued so far invalid, as if Drive dropped the history; returns
        the new start token."""
        with self._lock:
            self._head += 1
            self._floor = self._head
            return str(self._head)

    def page(
        self, token: str, size: int, include_removed: bool
    ) -> tuple[list[LoggedChange], str | None, str | None]:
        """(changes, nextPageToken, newStartPageToken) for one page from `token`.

        Only each file's latest change is listed (one change per file, its latest state);
        exactly one of the two tokens is set. Raises 400 `invalid` for a bad token.
        """
        with self._lock:
            start = self._parse(token)
            out: list[LoggedChange] = []
            index = bisect.bisect_left(self._seqs, start)
            for change in self._log[index:]:
                if self._latest[change.file_id] != change.seq:
                    continue  # a later entry has this file's latest state
                if change.removed and not include_removed:
                    continue
                if len(out) == size:
                    return out, str(out[-1].seq + 1), None
                out.append(change)
            return out, None, str(self._head)

    def _parse(self, token: str) -> int:
        if not token.isdigit():
            raise invalid_token()
        value = int(token)
        if not self._floor <= value <= self._head:
            raise invalid_token()
        return value
