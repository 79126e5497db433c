"""Poison-pill detection: an attempt marker per input while it is being processed.

An input that makes the platform kill the function (out of memory, the timeout, a native
crash) raises nothing: the invocation just dies, the event is redelivered, and the next one
dies on the same input. So before processing an input, the engine records an attempt marker
in the destination (:func:`shared.storage.layout.attempt_marker_key`) and deletes it once the
input's outcome is known. A marker still there at the next attempt means the invocation before
died while processing that input; its ``count`` says how many in a row did. Once it reaches
the limit (``DRIVEPIPE_POISON_ATTEMPTS``) the input is quarantined without being processed
again (:data:`CRASH_REASON`). A marker of another version of the file (md5 or modifiedTime
changed) does not count: a changed file starts from zero.
"""

from __future__ import annotations

import json
from contextlib import suppress
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol

from shared.errors import StorageError, StorageNotFound
from shared.storage import layout

if TYPE_CHECKING:
    from shared.storage import Storage


class InputVersion(Protocol):
    """What a marker records of an input: a Drive file, or an uploaded object's version."""

    @property
    def path(self) -> str: ...
    @property
    def md5(self) -> str | None: ...
    @property
    def modified_time(self) -> str | None: ...


CRASH_REASON = "crashed the function {count} times"


@dataclass(frozen=True)
class AttemptMarker:
    """One input being processed: which version of it, and how many attempts in a row so far."""

    key: str  # the input's state key
    path: str
    md5: str | None
    modified_time: str | None
    count: int
    run_id: str

    def to_json(self) -> bytes:
        """The marker document."""
        return json.dumps(asdict(self), sort_keys=True).encode()

    def same_version(self, other: AttemptMarker) -> bool:
        """True when both markers are of the same input at the same content version."""
        return (self.key, self.md5, self.modified_time) == (
            other.key,
            other.md5,
            other.modified_time,
        )


def _parse(raw: bytes) -> AttemptMarker | None:
    """The marker in ``raw``, or ``None`` when it is not one (treated as absent)."""
    try:
        data: Any = json.loads(raw)
        marker = AttemptMarker(
            key=str(data["key"]),
            path=str(data["path"]),
            md5=data.get("md5"),
            modified_time=data.get("modified_time"),
            count=int(data["count"]),
            run_id=str(data.get("run_id", "")),
        )
    except (ValueError, TypeError, KeyError):
        return None
    return marker if marker.count > 0 else None


class Attempts:
    """The attempt markers of one pipeline's inputs in ``dest``."""

    def __init__(self, dest: Storage, pipeline: str, run_id: str, limit: int) -> None:
        self.dest, self.pipeline, self.run_id, self.limit = dest, pipeline, run_id, limit

    def marker_key(self, input_key: str) -> str:
        """Where the marker of the input with state key ``input_key`` lives."""
        return layout.attempt_marker_key(self.pipeline, input_key)

    def begin(self, input_key: str, file: InputVersion) -> int:
        """Record an attempt at ``file``; return how many invocations in a row died on it.

        When that reaches :attr:`limit` the marker is left as it is and the caller quarantines
        the input instead of processing it (then calls :meth:`done`).
        """
        fresh = AttemptMarker(input_key, file.path, file.md5, file.modified_time, 1, self.run_id)
        key = self.marker_key(input_key)
        if self.dest.create_if_absent(key, fresh.to_json()):
            return 0  # the common case: one request, nobody died here before
        try:
            previous = _parse(self.dest.read(key))
        except StorageNotFound:  # deleted meanwhile: no crash to count
            previous = None
        crashes = previous.count if previous and previous.same_version(fresh) else 0
        if crashes >= self.limit:
            return crashes
        marker = AttemptMarker(
            input_key, file.path, file.md5, file.modified_time, crashes + 1, self.run_id
        )
        self.dest.write(key, marker.to_json(), content_type="application/json")
        return crashes

    def done(self, input_key: str) -> None:
        """The input's outcome is known (written, failed or quarantined): drop its marker."""
        self.dest.delete(self.marker_key(input_key))

    def abandon(self, input_key: str) -> None:
        """Processing stopped on a run error (not a crash): drop the marker if the destination
        lets us, so it does not count against the input; the run's own error goes on."""
        with suppress(StorageError):
            self.done(input_key)

    def count(self, input_key: str) -> int:
        """The marker's count for ``input_key`` (0 when there is none)."""
        try:
            marker = _parse(self.dest.read(self.marker_key(input_key)))
        except StorageNotFound:
            return 0
        return marker.count if marker else 0


def crash_reason(count: int) -> str:
    """The failure reason of an input quarantined after ``count`` crashes."""
    return CRASH_REASON.format(count=count)
