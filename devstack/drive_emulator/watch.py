"""changes.watch and channels.stop, and the notifications a channel delivers.

Drive's guide ("Notifications for resource changes"): ``changes.watch`` opens a channel
(``{id, type: "web_hook", address, token, expiration}``) to an HTTPS address; Drive then POSTs
an empty body there with ``X-Goog-Channel-ID``, ``X-Goog-Channel-Token``,
``X-Goog-Channel-Expiration``, ``X-Goog-Resource-ID``, ``X-Goog-Resource-URI``,
``X-Goog-Resource-State`` (``sync`` once, when the channel opens, then ``change``) and
``X-Goog-Message-Number`` (1 for ``sync``, increasing after it). ``expiration`` is a Unix time in
milliseconds; a changes channel lives at most 604,800 s (one week). ``channels.stop`` closes a
channel by ``{id, resourceId}``. A 500/502/503/504 answer is retried with backoff; any other
failure is not.

Here every change the tree's :class:`~devstack.drive_emulator.changelog.ChangeLog` appends is
one ``change`` notification per open channel. Deliveries run on one background thread (never on
a request thread), in order; expiry follows the emulator's injectable ``clock``. Faults for
tests: :meth:`NotificationFaults.drop_next` and :meth:`NotificationFaults.duplicate_next` (the
same message number twice, as a replay), or random rates from the CLI.
"""

from __future__ import annotations

import queue
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests

from devstack.drive_emulator.errors import ApiError
from devstack.drive_emulator.notifications import (
    RETRIED_STATUSES,
    Delivery,
    NotificationFaults,
    notification_headers,
)

MAX_CHANGES_LIFETIME_S = 604_800  # the guide's maximum for changes channels (one week)
DEFAULT_LIFETIME_S = 3_600  # best guess: no expiration requested gives one hour
MAX_CHANNEL_ID = 64  # the guide: "Maximum length: 64 characters"
MAX_TOKEN = 256  # the guide: "Maximum length: 256 characters"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
Clock = Callable[[], float]


@dataclass
class WatchedChannel:
    """One open channel: what changes.watch was given and what it answered."""

    id: str
    resource_id: str
    resource_uri: str
    address: str
    expiration_ms: int
    token: str | None
    visible: bool  # whether the channel's feed sees the tree (shared-drive flags)
    message_number: int = 0

    def resource(self) -> dict[str, Any]:
        """The Channel resource changes.watch answers with."""
        body: dict[str, Any] = {
            "kind": "api#channel",
            "id": self.id,
            "resourceId": self.resource_id,
            "resourceUri": self.resource_uri,
            "expiration": str(self.expiration_ms),
        }
        if self.token is not None:
            body["token"] = self.token
        return body


class WatchApi:
    """The channels of one emulator, and the thread that delivers their notifications."""

    def __init__(
        self,
        *,
        clock: Clock = time.time,
        allow_http_loopback: bool = True,
        retry_delays: tuple[float, ...] = (1.0, 2.0, 4.0),
        timeout: float = 10.0,
    ) -> None:
        self.clock = clock
        self.allow_http_loopback = allow_http_loopback
        self.retry_delays = retry_delays
        self.timeout = timeout
        self.faults = NotificationFaults()
        self.deliveries: list[Delivery] = []
        # ("opened" | "stopped" | "expired" | "forgotten", channel id), in order: tests check
        # that a renewal opened the new channel before it stopped the old one.
        self.history: list[tuple[str, str]] = []
        self._channels: dict[str, WatchedChannel] = {}
        self._lock = threading.Lock()
        self._done = threading.Condition(self._lock)
        self._queue: queue.Queue[tuple[str, str, int] | None] = queue.Queue()
        self._outstanding = 0
        self._thread: threading.Thread | None = None

    # ---- changes.watch / channels.stop ----------------------------------------------------
    def watch(self, body: Any, page_token: str, *, visible: bool, base_url: str) -> dict[str, Any]:
        """Open a channel from a Channel resource; the ``sync`` message follows at once."""
        if not isinstance(body, dict):
            raise ApiError(400, "parseError", "Parse Error")
        channel_id = _text(body, "id", required=True)
        kind = _text(body, "type", required=True)
        address = _text(body, "address", required=True)
        token = _text(body, "token")
        if len(channel_id) > MAX_CHANNEL_ID:
            raise ApiError(400, "invalid", "Invalid Value", location="resource.id")
        if kind not in ("web_hook", "webhook"):
            raise ApiError(400, "invalid", "Invalid Value", location="resource.type")
        if token is not None and len(token) > MAX_TOKEN:
            raise ApiError(400, "invalid", "Invalid Value", location="resource.token")
        self._check_address(address)
        now_ms = int(self.clock() * 1000)
        expiration_ms = _expiration(body.get("expiration"), now_ms)
        channel = WatchedChannel(
            id=channel_id,
            resource_id=secrets.token_urlsafe(20),
            resource_uri=f"{base_url}/changes?alt=json&pageToken={page_token}",
            address=address,
            expiration_ms=expiration_ms,
            token=token,
            visible=visible,
        )
        with self._lock:
            if channel_id in self._channels:
                raise ApiError(400, "channelIdNotUnique", f"Channel id {channel_id} not unique")
            self._channels[channel_id] = channel
            self.history.append(("opened", channel_id))
        self._enqueue(channel_id, "sync")
        return channel.resource()

    def stop(self, body: Any) -> None:
        """Close the channel ``{id, resourceId}``; 404 when there is no such open channel."""
        if not isinstance(body, dict):
            raise ApiError(400, "parseError", "Parse Error")
        channel_id = _text(body, "id", required=True)
        resource_id = _text(body, "resourceId", required=True)
        with self._lock:
            channel = self._channels.get(channel_id)
            if channel is None or channel.resource_id != resource_id:
                raise ApiError(
                    404, "notFound", f"Channel '{channel_id}' not found for project 'emulator'"
                )
            del self._channels[channel_id]
            self.history.append(("stopped", channel_id))

    def _check_address(self, address: str) -> None:
        parts = urlsplit(address)
        if parts.scheme == "https" and parts.hostname:
            return
        loopback = parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS
        if loopback and self.allow_http_loopback:
            return  # a local webhook; real Drive accepts HTTPS only
        raise ApiError(400, "push.webhookUrlNotHttps", f"WebHook callback must be HTTPS: {address}")

    # ---- what tests and the dev tools see --------------------------------------------------
    def open_channels(self) -> list[WatchedChannel]:
        """The channels that are open and not expired."""
        self._expire()
        with self._lock:
            return list(self._channels.values())

    def forget(self, channel_id: str) -> bool:
        """Drive stops a channel on its own (no notice to anyone): nothing more is sent."""
        with self._lock:
            if self._channels.pop(channel_id, None) is None:
                return False
            self.history.append(("forgotten", channel_id))
            return True

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until every queued notification was delivered (or given up); False on timeout."""
        with self._done:
            return self._done.wait_for(lambda: self._outstanding == 0, timeout=timeout)

    def sent(self, state: str | None = None) -> list[Delivery]:
        """Deliveries so far (of one ``state``), oldest first."""
        with self._lock:
            return [d for d in self.deliveries if state is None or d.state == state]

    # ---- notifications ---------------------------------------------------------------------
    def on_changes(self, count: int) -> None:
        """ChangeLog listener: ``count`` new changes, one ``change`` message each per channel."""
        for channel in self.open_channels():
            if channel.visible:
                for _ in range(count):
                    self._enqueue(channel.id, "change")

    def _expire(self) -> None:
        now_ms = int(self.clock() * 1000)
        with self._lock:
            for channel_id in [c.id for c in self._channels.values() if c.expiration_ms <= now_ms]:
                del self._channels[channel_id]
                self.history.append(("expired", channel_id))

    def _enqueue(self, channel_id: str, state: str) -> None:
        fault = self.faults.pick() if state == "change" else None
        copies = {"drop": 0, "duplicate": 2}.get(fault or "", 1)
        with self._lock:
            channel = self._channels.get(channel_id)
            if channel is None:
                return
            channel.message_number += 1  # a dropped message still used its number
            number = channel.message_number
            if not copies:
                self.deliveries.append(Delivery(channel_id, state, number, None, 0))
                return
            self._outstanding += copies
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="drive-notifications", daemon=True
                )
                self._thread.start()
        for _ in range(copies):
            self._queue.put((channel_id, state, number))

    def close(self) -> None:
        """Stop the delivery thread (queued notifications are dropped)."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout=self.timeout + 1)

    def _run(self) -> None:
        session = requests.Session()
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                self._deliver(session, *item)
            finally:
                with self._done:
                    self._outstanding -= 1
                    self._done.notify_all()

    def _deliver(self, session: requests.Session, channel_id: str, state: str, number: int) -> None:
        self._expire()
        with self._lock:
            channel = self._channels.get(channel_id)
        if channel is None:
            return  # stopped or expired after the change: Drive sends nothing more
        headers = notification_headers(channel, state, number)
        status, attempts = None, 0
        for delay in (0.0, *self.retry_delays):
            if delay:
                time.sleep(delay)
            attempts += 1
            try:
                response = session.post(channel.address, headers=headers, timeout=self.timeout)
                status = response.status_code
                response.close()
            except requests.RequestException:
                status = None
            if status not in RETRIED_STATUSES:
                break
        with self._lock:
            self.deliveries.append(Delivery(channel_id, state, number, status, attempts))


def _text(body: dict[str, Any], name: str, *, required: bool = False) -> Any:
    value = body.get(name)
    if value is None and required:
        raise ApiError(400, "required", "Required", location=f"resource.{name}")
    if value is not None and not isinstance(value, str):
        raise ApiError(400, "invalid", "Invalid Value", location=f"resource.{name}")
    return value


def _expiration(value: Any, now_ms: int) -> int:
    """The channel's expiry: the requested one, capped at the changes maximum (a best guess
    for what Drive does with a longer request); none requested gives the default."""
    if value is None:
        return now_ms + DEFAULT_LIFETIME_S * 1000
    text = str(value)
    if not text.lstrip("-").isdigit():
        raise ApiError(400, "invalid", "Invalid Value", location="resource.expiration")
    requested = int(text)
    if requested <= now_ms:
        raise ApiError(400, "invalid", "Invalid Value", location="resource.expiration")
    return min(requested, now_ms + MAX_CHANGES_LIFETIME_S * 1000)
