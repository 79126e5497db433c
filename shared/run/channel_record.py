"""The record of a pipeline's notification channels, kept in its destination.

``_state/channels/<pipeline>.json``: the ``current`` channel and the ones being ``retired``
(opened before it, stopped once it is saved). Each holds the ids, Drive's resource id, the
address, the expiry (Unix ms, as Drive answered it) and a *reference* to the token in the secret
store (:mod:`shared.run.channel_secrets`), never the token. :mod:`shared.run.channels` changes
it; the webhook reads it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.errors import StorageNotFound
from shared.storage import layout

if TYPE_CHECKING:
    from shared.storage import Storage

RECORD_VERSION = 1


@dataclass(frozen=True)
class Channel:
    """One channel Drive opened for the pipeline."""

    id: str
    resource_id: str
    address: str
    expiration_ms: int
    token_ref: str
    opened_at: float
    resource_uri: str = ""
    drive_id: str | None = None

    @property
    def expires_at(self) -> float:
        """The expiry in Unix seconds."""
        return self.expiration_ms / 1000

    def describe(self, now: float) -> dict[str, Any]:
        """For ``watch status`` and logs: ids, address, expiry; the token's reference only."""
        return {
            "id": self.id,
            "resource_id": self.resource_id,
            "address": self.address,
            "opened_at": _iso(self.opened_at),
            "expires_at": _iso(self.expires_at),
            "expires_in_hours": round((self.expires_at - now) / 3600, 2),
            "token_ref": self.token_ref,
        }


@dataclass
class ChannelRecord:
    """The pipeline's channels, as stored in its destination."""

    pipeline: str
    current: Channel | None = None
    retiring: list[Channel] = field(default_factory=list)

    def find(self, channel_id: str) -> Channel | None:
        """The channel with this id, current or retiring."""
        for channel in [self.current, *self.retiring]:
            if channel is not None and channel.id == channel_id:
                return channel
        return None

    @classmethod
    def load(cls, dest: Storage, pipeline: str) -> ChannelRecord:
        """The stored record (empty when there is none)."""
        try:
            data = json.loads(dest.read(layout.channel_key(pipeline)))
        except StorageNotFound:
            return cls(pipeline)
        current = data.get("current")
        return cls(
            pipeline,
            Channel(**current) if current else None,
            [Channel(**c) for c in data.get("retiring") or []],
        )

    def save(self, dest: Storage) -> None:
        """Write the record, or delete it when no channel is left."""
        key = layout.channel_key(self.pipeline)
        if self.current is None and not self.retiring:
            dest.delete(key)
            return
        body = {
            "version": RECORD_VERSION,
            "pipeline": self.pipeline,
            "current": asdict(self.current) if self.current else None,
            "retiring": [asdict(c) for c in self.retiring],
        }
        dest.write(key, json.dumps(body, indent=1).encode(), content_type="application/json")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
