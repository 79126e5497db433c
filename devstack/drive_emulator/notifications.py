"""What a notification channel sends: the headers, the record of each delivery, and faults.

A ``change`` notification can be dropped (never sent; its message number is used up) or
duplicated (sent twice with the same number, as a replay), the next N exactly or at random.
"""

from __future__ import annotations

import email.utils
import random
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from devstack.drive_emulator.watch import WatchedChannel

USER_AGENT = "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)"
RETRIED_STATUSES = frozenset({500, 502, 503, 504})


@dataclass(frozen=True)
class Delivery:
    """One POST the emulator made (or dropped), for tests and stats."""

    channel_id: str
    state: str
    message_number: int
    status: int | None  # None: dropped by a fault, or the address did not answer
    attempts: int


@dataclass
class NotificationFaults:
    """Drop or duplicate notifications: the next N exactly, or at random rates."""

    drop_rate: float = 0.0
    duplicate_rate: float = 0.0
    seed: int | None = None
    _drop: int = 0
    _duplicate: int = 0
    _rng: random.Random = field(default_factory=random.Random, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        for name in ("drop_rate", "duplicate_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within [0, 1]")
        self._rng.seed(self.seed)

    def drop_next(self, count: int = 1) -> None:
        """The next ``count`` ``change`` notifications are never sent."""
        with self._lock:
            self._drop += count

    def duplicate_next(self, count: int = 1) -> None:
        """The next ``count`` ``change`` notifications are sent twice, same message number."""
        with self._lock:
            self._duplicate += count

    def pick(self) -> str | None:
        """``drop``, ``duplicate`` or ``None`` for one notification."""
        with self._lock:
            if self._drop:
                self._drop -= 1
                return "drop"
            if self._duplicate:
                self._duplicate -= 1
                return "duplicate"
            roll = self._rng.random()
            if roll < self.drop_rate:
                return "drop"
            if roll < self.drop_rate + self.duplicate_rate:
                return "duplicate"
        return None


def notification_headers(channel: WatchedChannel, state: str, number: int) -> dict[str, str]:
    """The headers of one notification, as Drive sends them (the body is empty)."""
    expires = email.utils.formatdate(channel.expiration_ms / 1000, usegmt=True)
    headers = {
        "User-Agent": USER_AGENT,
        "Content-Length": "0",
        "X-Goog-Channel-ID": channel.id,
        "X-Goog-Channel-Expiration": expires,
        "X-Goog-Resource-ID": channel.resource_id,
        "X-Goog-Resource-URI": channel.resource_uri,
        "X-Goog-Resource-State": state,
        "X-Goog-Message-Number": str(number),
    }
    if channel.token is not None:
        headers["X-Goog-Channel-Token"] = channel.token
    return headers
