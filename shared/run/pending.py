"""Coalescing push notifications into syncs, with the sync lease and two small state objects.

- ``requested.json`` (:func:`accept`, the webhook, once per accepted ``change`` notification):
  a fresh random ``nonce``, when, and the highest message number seen per channel.
- ``done.json`` (:class:`Cover`, an inline sync of a push pipeline, under its sync lease): the
  nonce that was requested when the sync began, written once the sync ended well.

A sync is *owed* while the two nonces differ. A push worker runs one only when it is owed and
stops when the lease is held (:mod:`shared.triggers.push`); the sync that holds it snapshots
the nonce before it reads the changes feed, settles it at its end, and after releasing the
lease hands one more sync off if a notification arrived meanwhile. So a burst during a sync
costs one more sync, not one per message, and no scheduler is involved. Nonces compare by
identity, not order, so clocks of different machines never matter; a lost race on either file
only ever costs an extra sync, never a missed one.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared.errors import StorageError, StorageNotFound
from shared.log import get_logger
from shared.storage import layout

if TYPE_CHECKING:
    from shared.run.context import SyncContext
    from shared.storage import Storage

log = get_logger("push")
SEEN_CHANNELS = 4  # message numbers kept for this many channels (two overlap in a renewal)


@dataclass(frozen=True)
class Requested:
    """The last accepted notification's request."""

    nonce: str
    at: float
    channel: str = ""
    seen: dict[str, int] = field(default_factory=dict)  # channel id -> highest message number


def _read(dest: Storage, key: str) -> dict[str, Any] | None:
    try:
        data = json.loads(dest.read(key))
    except StorageNotFound:
        return None
    except ValueError:
        return None  # unreadable: treated as absent (a sync is owed; at worst an extra one)
    return data if isinstance(data, dict) else None


def requested(dest: Storage, pipeline: str) -> Requested | None:
    """What the last accepted notification asked for, or ``None``."""
    data = _read(dest, layout.push_requested_key(pipeline))
    if data is None or not isinstance(data.get("nonce"), str):
        return None
    raw_seen = data.get("seen")
    seen: dict[str, Any] = raw_seen if isinstance(raw_seen, dict) else {}
    return Requested(
        data["nonce"],
        float(data.get("at") or 0.0),
        str(data.get("channel") or ""),
        {str(k): int(v) for k, v in seen.items() if isinstance(v, int)},
    )


def done_nonce(dest: Storage, pipeline: str) -> str | None:
    """The request the last finished sync covered."""
    data = _read(dest, layout.push_done_key(pipeline))
    return str(data["nonce"]) if data and isinstance(data.get("nonce"), str) else None


def owed(dest: Storage, pipeline: str) -> Requested | None:
    """The request no finished sync covered yet, or ``None`` when nothing is owed."""
    request = requested(dest, pipeline)
    if request is None or request.nonce == done_nonce(dest, pipeline):
        return None
    return request


def accept(
    dest: Storage, pipeline: str, channel: str, number: int, *, now: float | None = None
) -> bool:
    """Record a ``change`` notification as a request; False for a replayed or late one.

    A message number at or below the highest already accepted on that channel is a replay (or
    arrived after a later one): the sync the later one asked for reads the feed after this
    change happened, so it covers it.
    """
    prior = requested(dest, pipeline)
    seen = dict(prior.seen) if prior else {}
    if number <= seen.get(channel, 0):
        return False
    seen.pop(channel, None)
    seen[channel] = number
    kept = dict(list(seen.items())[-SEEN_CHANNELS:])
    body = {
        "nonce": secrets.token_hex(8),
        "at": time.time() if now is None else now,
        "channel": channel,
        "message": number,
        "seen": kept,
    }
    dest.write(
        layout.push_requested_key(pipeline),
        json.dumps(body).encode(),
        content_type="application/json",
    )
    return True


class Cover:
    """What one inline sync of a push pipeline covers (see the module docstring).

    ``Cover(ctx)`` right after the lease is taken and before the feed is read; :meth:`settle`
    when the run ended well (still under the lease); :meth:`follow_up` after the release.
    Does nothing for pipelines without ``push``, dry runs, and runs that list less than the
    pipeline's folder (``since``, another folder, ``--include``).
    """

    def __init__(self, ctx: SyncContext) -> None:
        request = ctx.request
        self.dest = ctx.dest
        self.pipeline = request.pipeline.name
        self.run_id = ctx.run_id
        partial = request.since or request.folder_id or request.listing_narrowed
        self.active = bool(request.pipeline.push and not request.dry_run and not partial)
        self.snapshot: str | None = None
        self.settled = False
        if self.active:
            try:
                found = requested(self.dest, self.pipeline)
            except StorageError as exc:
                log.warning("cannot read push requests", extra={"error": str(exc)})
                self.active = False
                return
            self.snapshot = found.nonce if found else None

    def settle(self) -> None:
        """Record that the request snapshotted at the start is covered."""
        if not self.active:
            return
        if self.snapshot is not None:
            body = {"nonce": self.snapshot, "at": time.time(), "run_id": self.run_id}
            try:
                self.dest.write(
                    layout.push_done_key(self.pipeline),
                    json.dumps(body).encode(),
                    content_type="application/json",
                )
            except StorageError as exc:  # owed stays owed: at worst one extra sync
                log.warning("cannot record a covered push request", extra={"error": str(exc)})
                return
        self.settled = True

    def follow_up(self) -> None:
        """After the lease is released: hand one more sync off if a request came meanwhile.

        Never raises (it runs in a ``finally``); the schedule's reconcile covers a failure.
        """
        if self.settled:
            follow_up(self.dest, self.pipeline, reason=f"notified during run {self.run_id}")


def follow_up(dest: Storage, pipeline: str, *, reason: str) -> bool:
    """Hand a sync off when one is owed; True when a message was sent. Never raises."""
    from shared.run import push_queue

    try:
        if owed(dest, pipeline) is None:
            return False
        sent = push_queue.hand_off(push_queue.PushMessage(pipeline, reason))
    except Exception as exc:  # storage or queue: the next sync or reconcile picks it up
        log.error(
            "could not hand the owed sync off", extra={"pipeline": pipeline, "error": str(exc)}
        )
        return False
    if not sent:
        log.warning(
            "a push request is owed but no push queue is configured; the next sync covers it",
            extra={"pipeline": pipeline},
        )
    return sent
