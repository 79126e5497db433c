"""Drive push notifications, the client side: ``changes.watch`` and ``channels.stop``.

Drive's guide ("Notifications for resource changes"): ``POST changes/watch?pageToken=T`` with
``{id, type: "web_hook", address, token, expiration}`` opens a channel to an HTTPS address and
answers with the channel's ``resourceId`` and actual ``expiration`` (Unix milliseconds; a
changes channel lives at most one week). ``POST channels/stop`` with ``{id, resourceId}`` closes
it. The token travels in every notification's ``X-Goog-Channel-Token`` header; it is never
logged here.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.drive.http import DriveHttp
from shared.errors import DriveError

MAX_CHANGES_CHANNEL_SECONDS = 604_800  # the guide's maximum lifetime of a changes channel
MAX_CHANNEL_ID = 64  # the guide: channel ids are at most 64 characters
MAX_TOKEN = 256  # ... and tokens at most 256


@dataclass(frozen=True)
class OpenedChannel:
    """What changes.watch answered: the ids to stop the channel with, and its real expiry."""

    id: str
    resource_id: str
    resource_uri: str
    expiration_ms: int


class ChannelsApi:
    """changes.watch and channels.stop over the client's DriveHttp (retried like any call)."""

    def __init__(self, http: DriveHttp) -> None:
        self.http = http

    def watch_changes(
        self,
        *,
        channel_id: str,
        address: str,
        token: str,
        expiration_ms: int,
        page_token: str,
        drive_id: str | None = None,
    ) -> OpenedChannel:
        """Open a channel on the changes feed from ``page_token``, to ``address``."""
        if len(channel_id) > MAX_CHANNEL_ID or len(token) > MAX_TOKEN:
            raise ValueError("channel ids hold at most 64 characters and tokens 256")
        params = {
            "pageToken": page_token,
            "supportsAllDrives": "true",
            "includeItemsFromAllDrives": "true",
        }
        if drive_id:
            params["driveId"] = drive_id
        body = {
            "id": channel_id,
            "type": "web_hook",
            "address": address,
            "token": token,
            "expiration": str(expiration_ms),
        }
        answer = self.http.post_json("changes/watch", params, body)
        resource_id = answer.get("resourceId")
        if not isinstance(resource_id, str) or not resource_id:
            raise DriveError("changes.watch answered without a resourceId")
        expiration = str(answer.get("expiration") or expiration_ms)
        return OpenedChannel(
            id=str(answer.get("id") or channel_id),
            resource_id=resource_id,
            resource_uri=str(answer.get("resourceUri") or ""),
            expiration_ms=int(expiration) if expiration.isdigit() else expiration_ms,
        )

    def stop(self, channel_id: str, resource_id: str) -> bool:
        """Close a channel; False when Drive no longer knows it (expired or stopped)."""
        try:
            self.http.post_json("channels/stop", {}, {"id": channel_id, "resourceId": resource_id})
        except DriveError as exc:
            if exc.status == 404:
                return False
            raise
        return True
