"""A pipeline's Drive notification channel: open, renew, reopen, stop, and its record.

The record (``_state/channels/<pipeline>.json``) holds the ``current`` channel and the ones
being ``retired``: ids, Drive's resource id, the address, the expiry (Unix ms, as Drive says it)
and a *reference* to the token in the secret store (:mod:`shared.run.channel_secrets`), never
the token. The webhook accepts a notification on any channel of the record.

Drive has no way to renew a channel: a new one is opened first, saved as ``current`` (the old
one still delivering, so no change falls in a gap), then the old one is stopped and its token
deleted. :func:`maintain`, called by the scheduled handler, does that when the channel is
missing, expired or near its expiry, when the webhook's address changed, or when notifications
stopped (the reconcile found changes none announced). Every change to the record happens under
the lease ``_locks/channels/<pipeline>/``, so two ticks never open two channels.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from shared.drive.watch import MAX_CHANGES_CHANNEL_SECONDS
from shared.errors import ConfigError, DriveError, SecretStoreError
from shared.log import get_logger
from shared.run.channel_record import Channel, ChannelRecord
from shared.run.channel_secrets import SecretStore, configured_store, delete_token
from shared.run.lease import Lease
from shared.settings import runtime_settings
from shared.storage import layout

__all__ = ["Channel", "ChannelRecord", "Outcome", "Watcher", "due", "maintain", "start", "stop"]
if TYPE_CHECKING:
    from shared.config import Pipeline
    from shared.drive import DriveClient
    from shared.storage import Storage

log = get_logger("push")
LOCK_SECONDS = 120.0


@dataclass(frozen=True)
class Outcome:
    """What a lifecycle call did: ``opened``, ``renewed``, ``reopened``, ``kept``,
    ``stopped``, ``none`` (nothing to stop) or ``busy`` (another process holds the lock)."""

    pipeline: str
    action: str
    reason: str
    channel: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, for the CLI and the schedule's results."""
        return asdict(self)


@dataclass
class Watcher:
    """What the lifecycle calls need: the pipeline, its destination, Drive and the settings."""

    pipeline: Pipeline
    dest: Storage
    drive: DriveClient
    address: str | None = None  # default: DRIVEPIPE_PUSH_ADDRESS
    store: SecretStore | None = None  # default: DRIVEPIPE_CHANNEL_SECRETS
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        settings = runtime_settings()
        self.address = self.address or settings.push_address
        self.lifetime = min(settings.channel_hours * 3600, MAX_CHANGES_CHANNEL_SECONDS)
        self.renew_before = settings.channel_renew_hours * 3600

    def require_address(self) -> str:
        """The webhook's address, or ConfigError naming the variable."""
        if not self.address:
            raise ConfigError(
                "DRIVEPIPE_PUSH_ADDRESS is not set: give the public https:// URL of "
                "POST /drive/notifications (docs/push.md)"
            )
        return self.address


def open_channel(watcher: Watcher) -> Channel:
    """changes.watch from "now" with a fresh id and a random token kept in the secret store."""
    address = watcher.require_address()
    store = watcher.store or configured_store()
    pipeline, drive = watcher.pipeline, watcher.drive
    channel_id = f"drivepipe-{uuid.uuid4().hex}"
    token = secrets.token_urlsafe(32)
    token_ref = store.put(f"{pipeline.name}/{channel_id}", token)
    try:
        drive_id = pipeline.source.drive_id
        if drive_id is None and pipeline.source.folder_id:
            drive_id = drive.get_file(pipeline.source.folder_id, "id,driveId").get("driveId")
        now = watcher.clock()
        opened = drive.watch_changes(
            channel_id=channel_id,
            address=address,
            token=token,
            expiration_ms=int((now + watcher.lifetime) * 1000),
            page_token=drive.start_page_token(drive_id),
            drive_id=drive_id,
        )
    except BaseException:
        delete_token(token_ref)
        raise
    channel = Channel(
        id=opened.id,
        resource_id=opened.resource_id,
        address=address,
        expiration_ms=opened.expiration_ms,
        token_ref=token_ref,
        opened_at=now,
        resource_uri=opened.resource_uri,
        drive_id=drive_id,
    )
    log.info(
        "opened a notification channel", extra={"pipeline": pipeline.name, "channel": channel.id}
    )
    return channel


def close_channel(drive: DriveClient, channel: Channel) -> bool:
    """channels.stop, then delete the token; False (logged) when it should be tried again."""
    try:
        known = drive.stop_channel(channel.id, channel.resource_id)
        delete_token(channel.token_ref)
    except (DriveError, SecretStoreError) as exc:
        log.warning(
            "could not stop a channel yet", extra={"channel": channel.id, "error": str(exc)}
        )
        return False
    log.info("stopped a notification channel", extra={"channel": channel.id, "known": known})
    return True


def _locked(watcher: Watcher) -> Lease | None:
    lease = Lease(watcher.dest, layout.channel_lock(watcher.pipeline.name), ttl=LOCK_SECONDS)
    return lease if lease.try_acquire() is not None else None


def _replace(watcher: Watcher, record: ChannelRecord, action: str, reason: str) -> Outcome:
    """Open the new channel, save it as current, then stop the old ones."""
    fresh = open_channel(watcher)
    record.retiring = [c for c in [record.current, *record.retiring] if c is not None]
    record.current = fresh
    record.save(watcher.dest)
    record.retiring = [c for c in record.retiring if not close_channel(watcher.drive, c)]
    record.save(watcher.dest)
    log.info(
        "notification channel %s", action, extra={"pipeline": record.pipeline, "reason": reason}
    )
    return Outcome(record.pipeline, action, reason, fresh.describe(watcher.clock()))


def due(
    record: ChannelRecord,
    *,
    address: str | None,
    now: float,
    renew_before: float,
    silent: bool = False,
) -> tuple[str, str] | None:
    """``(action, reason)`` when the channel must be opened or replaced now, else ``None``."""
    current = record.current
    if current is None:
        return "opened", "no channel was open"
    if address and current.address != address:
        return "reopened", "the webhook's address changed"
    if current.expires_at <= now:
        return "reopened", "the channel had expired"
    if silent:
        return "reopened", "notifications stopped: the reconcile found changes none announced"
    left = current.expires_at - now
    if left < renew_before:
        return "renewed", f"it expired in {left / 3600:.1f} h"
    return None


def _due(
    watcher: Watcher, record: ChannelRecord, *, silent: bool = False
) -> tuple[str, str] | None:
    now = watcher.clock()
    return due(
        record, address=watcher.address, now=now, renew_before=watcher.renew_before, silent=silent
    )


def start(watcher: Watcher, *, force: bool = False) -> Outcome:
    """Open the pipeline's channel (``watch start``); a healthy one is kept unless ``force``."""
    lease = _locked(watcher)
    if lease is None:
        return Outcome(watcher.pipeline.name, "busy", "another process is changing the channel")
    try:
        record = ChannelRecord.load(watcher.dest, watcher.pipeline.name)
        action = _due(watcher, record) or (("reopened", "asked to") if force else None)
        if action is None:
            assert record.current is not None
            return Outcome(
                record.pipeline, "kept", "already open", record.current.describe(watcher.clock())
            )
        return _replace(watcher, record, *action)
    finally:
        lease.release()


def maintain(watcher: Watcher, *, silent: bool = False) -> Outcome:
    """The schedule's turn: open, renew or reopen when due; retry stopping retired channels."""
    lease = _locked(watcher)
    if lease is None:
        return Outcome(watcher.pipeline.name, "busy", "another process is changing the channel")
    try:
        record = ChannelRecord.load(watcher.dest, watcher.pipeline.name)
        action = _due(watcher, record, silent=silent)
        if action is not None:
            return _replace(watcher, record, *action)
        if record.retiring:
            record.retiring = [c for c in record.retiring if not close_channel(watcher.drive, c)]
            record.save(watcher.dest)
        assert record.current is not None
        return Outcome(record.pipeline, "kept", "healthy", record.current.describe(watcher.clock()))
    finally:
        lease.release()


def stop(watcher: Watcher) -> Outcome:
    """Stop every channel of the pipeline and forget them (``watch stop``)."""
    lease = _locked(watcher)
    if lease is None:
        return Outcome(watcher.pipeline.name, "busy", "another process is changing the channel")
    try:
        record = ChannelRecord.load(watcher.dest, watcher.pipeline.name)
        channels = [c for c in [record.current, *record.retiring] if c is not None]
        if not channels:
            return Outcome(record.pipeline, "none", "no channel was open")
        record.current = None
        record.retiring = [c for c in channels if not close_channel(watcher.drive, c)]
        record.save(watcher.dest)
        left = f"; {len(record.retiring)} to stop again later" if record.retiring else ""
        return Outcome(record.pipeline, "stopped", f"stopped {len(channels)} channel(s){left}")
    finally:
        lease.release()
