"""Leases with an expiry in the destination: one sync per pipeline, one claim per event.

A lease named ``N`` is a sequence of *epoch* objects ``_locks/N/<epoch>.json``, each created
with :meth:`Storage.create_if_absent`. Whoever creates the next epoch holds the lease; the
holder id, its run id and ``expires_at`` are in the object body. Taking over is safe:

- a live lease (latest epoch, not released, not expired) is refused;
- a released or expired lease is taken by creating epoch ``latest + 1``. Two takers racing for
  the same stale lease both try to create the *same* key, and the storage lets exactly one win
  (S3 ``If-None-Match: *``, GCS ``ifGenerationMatch=0``, a hard link locally), so the "both
  delete, both create" race of a single lock object cannot happen. The winner then deletes the
  older epochs; a taker whose view predates that clean-up could re-create an old epoch number,
  so every taker lists again after creating and backs off (deleting its object) unless its
  epoch is the newest;
- a holder that renews checks first that no later epoch exists (fencing). If one does, its
  lease expired and was taken over: it stops and reports :class:`LeaseLost` instead of saving.

The one window left is a holder that stalls past its own expiry between that check and a write;
renewing at a third of the TTL keeps a live holder far from expiry. Upstream gcp-storage-emulator
ignores ``ifGenerationMatch``; devstack runs it patched to enforce it (devstack/gcs_emulator.py),
so the race tests cover GCS as well as S3 and local directories.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.errors import LeaseHeld, LeaseLost, StorageError, StorageNotFound
from shared.storage import layout

if TYPE_CHECKING:
    from shared.storage import Storage

DEFAULT_TTL_SECONDS = 900.0  # Lambda's longest run; renewed at a third of it while held


@dataclass(frozen=True)
class LeaseInfo:
    """One epoch object's body."""

    epoch: int
    holder: str
    run_id: str | None
    acquired_at: float
    expires_at: float
    released: bool = False

    def live(self, now: float) -> bool:
        """True while neither released nor expired."""
        return not self.released and now < self.expires_at

    def to_json(self) -> bytes:
        """The epoch object's body (times as epoch seconds and ISO text)."""
        body: dict[str, Any] = {
            "epoch": self.epoch,
            "holder": self.holder,
            "run_id": self.run_id,
            "acquired_at": self.acquired_at,
            "expires_at": self.expires_at,
            "expires_at_iso": _iso(self.expires_at),
            "released": self.released,
        }
        return json.dumps(body).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> LeaseInfo:
        """Parse an epoch object's body."""
        data = json.loads(raw)
        return cls(
            epoch=int(data["epoch"]),
            holder=str(data["holder"]),
            run_id=data.get("run_id"),
            acquired_at=float(data["acquired_at"]),
            expires_at=float(data["expires_at"]),
            released=bool(data.get("released", False)),
        )


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def new_holder_id() -> str:
    """A unique id for one process' claim: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class Lease:
    """A named lease in ``storage``; use :meth:`acquire`, :meth:`renew`, :meth:`release`.

    Time comes from seams tests replace: ``clock`` (expiries and :meth:`acquire`'s bounded
    wait), ``sleep`` (between :meth:`acquire`'s polls) and ``stop_event``, whose timed
    ``wait`` paces the background renewals and whose ``set`` stops them.
    """

    def __init__(
        self,
        storage: Storage,
        name: str,
        *,
        ttl: float = DEFAULT_TTL_SECONDS,
        holder: str | None = None,
        run_id: str | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        stop_event: threading.Event | None = None,
    ) -> None:
        self.storage = storage
        self.name = name
        self.ttl = ttl
        self.holder = holder or new_holder_id()
        self.run_id = run_id
        self._clock = clock
        self._sleep = sleep
        self.info: LeaseInfo | None = None
        self._lock = threading.Lock()
        self._stop = stop_event if stop_event is not None else threading.Event()
        self._renewer: threading.Thread | None = None
        self.lost: str | None = None  # why the lease was lost, once it was

    @property
    def prefix(self) -> str:
        """Where this lease's epoch objects live."""
        return layout.lock_prefix(self.name)

    def _key(self, epoch: int) -> str:
        return layout.lock_epoch_key(self.name, epoch)

    def latest(self) -> LeaseInfo | None:
        """The newest epoch object, or ``None`` when the lease was never taken."""
        for _ in range(5):
            keys = sorted(o.key for o in self.storage.list(self.prefix) if o.key.endswith(".json"))
            if not keys:
                return None
            try:
                return LeaseInfo.from_json(self.storage.read(keys[-1]))
            except StorageNotFound:
                continue  # a newer holder cleaned it up after a newer epoch: list again
            except (ValueError, KeyError):
                epoch = int(keys[-1][len(self.prefix) : -5] or 0)
                return LeaseInfo(epoch, "unreadable", None, 0.0, 0.0, released=True)
        raise StorageError(f"lease {self.name}: epochs keep vanishing while being read")

    def adopt(self) -> bool:
        """Take over holding a lease this holder id acquired in another process (a fanned-out
        run's finalizer releasing what its planner took); False if it was taken over since."""
        current = self.latest()
        if current is None or current.holder != self.holder or current.released:
            return False
        with self._lock:
            self.info = current
        return True

    def try_acquire(self) -> LeaseInfo | None:
        """Take the lease if it is free; ``None`` when a live holder has it."""
        current = self.latest()
        now = self._clock()
        if current is not None and current.live(now):
            return None
        epoch = (current.epoch + 1) if current else 1
        info = LeaseInfo(epoch, self.holder, self.run_id, now, now + self.ttl)
        if not self.storage.create_if_absent(self._key(epoch), info.to_json()):
            return None  # another taker created this epoch first
        newest = self.latest()
        if newest is None or newest.epoch != epoch:
            # Our view was stale: a later epoch exists (ours was re-created after cleanup).
            self.storage.delete(self._key(epoch))
            return None
        self.info = info
        if current is not None:  # older epochs are history now; ours is the newest
            self._delete_below(epoch)
        return info

    def acquire(self, *, wait: float = 0.0, poll: float = 0.2) -> LeaseInfo:
        """Take the lease, waiting up to ``wait`` seconds of its clock, else raise LeaseHeld."""
        deadline = self._clock() + wait
        while True:
            info = self.try_acquire()
            if info is not None:
                return info
            current = self.latest()
            if self._clock() >= deadline and current is not None:
                raise LeaseHeld(self.name, current)
            self._sleep(poll)

    def renew(self) -> None:
        """Push the expiry out by one TTL; raise :class:`LeaseLost` if it was taken over."""
        with self._lock:
            if self.info is None:
                raise LeaseLost(f"{self.name}: not held")
            if self.lost:
                raise LeaseLost(self.lost)
            current = self.latest()
            if current is None or current.epoch != self.info.epoch:
                other = f"epoch {current.epoch} by {current.holder}" if current else "deleted"
                self.lost = f"lease {self.name} was taken over ({other})"
                raise LeaseLost(self.lost)
            now = self._clock()
            info = LeaseInfo(
                self.info.epoch, self.holder, self.run_id, self.info.acquired_at, now + self.ttl
            )
            self.storage.write(self._key(info.epoch), info.to_json())
            self.info = info

    def check(self) -> None:
        """Raise :class:`LeaseLost` unless we still hold the lease (renewing it)."""
        self.renew()

    def release(self) -> None:
        """Mark our epoch released (idempotent; a lost lease is left to its new holder)."""
        self.stop_renewing()
        with self._lock:
            info, self.info = self.info, None
            if info is None or self.lost:
                return
            try:
                current = self.latest()
                if current is not None and current.epoch == info.epoch:
                    done = LeaseInfo(
                        info.epoch,
                        self.holder,
                        self.run_id,
                        info.acquired_at,
                        info.expires_at,
                        True,
                    )
                    self.storage.write(self._key(info.epoch), done.to_json())
            except StorageError:
                pass  # it expires on its own

    def discard(self) -> None:
        """Stop holding and delete every epoch object: the work the lease guarded is recorded
        elsewhere (an event's completion marker), so its history is no longer needed."""
        self.stop_renewing()
        with self._lock:
            self.info = None
        for obj in list(self.storage.list(self.prefix)):
            self.storage.delete(obj.key)

    def _delete_below(self, epoch: int) -> None:
        try:
            for obj in list(self.storage.list(self.prefix)):
                if obj.key < self._key(epoch):
                    self.storage.delete(obj.key)
        except StorageError:
            pass  # history only; the newest epoch decides

    # ---- background renewal while a long run holds the lease ------------------------------
    def start_renewing(self, every: float | None = None) -> None:
        """Renew every ``every`` seconds (default a third of the TTL) in a daemon thread."""
        interval = every if every is not None else self.ttl / 3
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.renew()
                except LeaseLost:
                    return
                except StorageError:
                    continue  # try again next tick; the TTL leaves room for two misses

        self._renewer = threading.Thread(target=loop, name=f"lease-{self.name}", daemon=True)
        self._renewer.start()

    def stop_renewing(self) -> None:
        """Stop the renewal thread, if any."""
        self._stop.set()
        if self._renewer is not None and self._renewer is not threading.current_thread():
            self._renewer.join(timeout=5)
        self._renewer = None
