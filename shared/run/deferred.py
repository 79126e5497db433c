"""Request-file syncs that found their pipeline's sync running: kept until that sync ends.

A request file asks for a sync *now*; if another sync of the pipeline holds its lease, the
request is written to ``_state/deferred/<pipeline>/<sha256 of the event>.json`` in the
pipeline's destination and its event acknowledged. Whoever ends a sync of that pipeline then
runs what waits there (:mod:`shared.triggers.deferred`), oldest first, so the request runs
after the sync that blocked it instead of being retried until the platform gives up.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from shared.errors import StorageNotFound
from shared.log import get_logger
from shared.run.manifest import utc_now
from shared.storage import Storage
from shared.storage.layout import deferred_key, deferred_prefix

log = get_logger("deferred")


@dataclass(frozen=True)
class DeferredRequest:
    """A request-file sync waiting for its pipeline's running sync to end."""

    pipeline: str
    dedupe_id: str  # the storage event that asked for it (runs at most once)
    url: str  # the request file
    body: dict[str, Any]  # the request as the file said it
    trigger: str
    blocked_by: str | None = None  # the run that held the lease
    deferred_at: str = ""

    @property
    def key(self) -> str:
        """Where it waits in the destination."""
        return deferred_key(self.pipeline, self.dedupe_id)


def defer(dest: Storage, request: DeferredRequest) -> DeferredRequest:
    """Store ``request`` (an identical one already waiting is kept as it is)."""
    stamped = DeferredRequest(**{**asdict(request), "deferred_at": utc_now()})
    dest.create_if_absent(stamped.key, json.dumps(asdict(stamped)).encode())
    return stamped


def pending(dest: Storage, pipeline: str) -> list[DeferredRequest]:
    """The pipeline's waiting requests, oldest first; an unreadable marker is skipped."""
    found = []
    for info in dest.list(deferred_prefix(pipeline)):
        try:
            found.append(DeferredRequest(**json.loads(dest.read(info.key))))
        except StorageNotFound:
            continue  # run and removed since the listing
        except (ValueError, TypeError) as exc:  # not ours: never blocks the others
            log.error("unreadable deferred request", extra={"key": info.key, "error": str(exc)})
    return sorted(found, key=lambda r: (r.deferred_at, r.key))


def done(dest: Storage, request: DeferredRequest) -> None:
    """Remove a request that ran (or can never run)."""
    dest.delete(request.key)
