"""The Drive changes feed: changes.getStartPageToken, changes.list to the end, files.get.

Every request goes through DriveHttp, so it is retried like any other call. A page token
Drive refuses raises ChangesTokenInvalid: Drive answers 400 ``invalid`` on ``pageToken``
("Invalid Value") for a token it does not know; 410 is treated the same, as some clients
report it for expired tokens. The caller then walks the tree and takes a new start token.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from shared.drive.http import DriveHttp
from shared.drive.listing import ITEM_FIELDS, file_path, to_drive_file
from shared.drive.models import ChangesPage, DriveChange
from shared.errors import ChangesTokenInvalid, DriveError

CHANGE_FIELDS = f"fileId,removed,time,changeType,file({ITEM_FIELDS})"
CHANGES_LIST_FIELDS = f"nextPageToken,newStartPageToken,changes({CHANGE_FIELDS})"
PAGE_SIZE = 1000  # the documented maximum


def is_token_refusal(error: DriveError) -> bool:
    """True when Drive refused the page token itself (not another parameter)."""
    if error.status == 410:
        return True
    return error.status == 400 and (
        error.location == "pageToken" or (error.reason == "invalid" and error.location is None)
    )


def to_change(item: dict[str, Any]) -> DriveChange:
    """A DriveChange from one `changes[]` entry (file changes only)."""
    file_id = str(item.get("fileId") or (item.get("file") or {}).get("id") or "")
    resource = item.get("file")
    removed = bool(item.get("removed")) or not isinstance(resource, dict)
    if removed or not isinstance(resource, dict):
        return DriveChange(file_id=file_id, removed=True, time=str(item.get("time", "")))
    name = str(resource.get("name", ""))
    shortcut = resource.get("shortcutDetails") or {}
    return DriveChange(
        file_id=file_id,
        removed=False,
        time=str(item.get("time", "")),
        file=to_drive_file(resource, name=name, path=name),
        parents=tuple(resource.get("parents") or ()),
        trashed=bool(resource.get("trashed", False)),
        drive_id=resource.get("driveId"),
        shortcut_target_id=shortcut.get("targetId"),
    )


class ChangesFeed:
    """Reads the changes feed of My Drive, or of one shared drive with ``drive_id``."""

    def __init__(self, http: DriveHttp) -> None:
        self.http = http

    def start_page_token(self, drive_id: str | None = None) -> str:
        """The token for "now": changes.list from it returns only later changes."""
        params = {"supportsAllDrives": "true", "fields": "startPageToken"}
        if drive_id:
            params["driveId"] = drive_id
        body = self.http.get_json("changes/startPageToken", params)
        token = body.get("startPageToken")
        if not isinstance(token, str) or not token:
            raise DriveError("changes.getStartPageToken answered without a startPageToken")
        return token

    def pages(
        self,
        token: str,
        *,
        drive_id: str | None = None,
        include_removed: bool = True,
        page_size: int = PAGE_SIZE,
    ) -> Iterator[ChangesPage]:
        """Yield each page from ``token`` until the one with ``new_start_page_token``."""
        params = {
            "pageSize": str(page_size),
            "includeRemoved": "true" if include_removed else "false",
            "supportsAllDrives": "true",
            "includeItemsFromAllDrives": "true",  # shared-drive items, filtered by ancestry
            "fields": CHANGES_LIST_FIELDS,
        }
        if drive_id:
            params["driveId"] = drive_id
        seen: set[str] = set()
        while True:
            if token in seen:
                raise DriveError(f"changes.list repeated the page token {token!r}")
            seen.add(token)
            page = self._page(token, params)
            yield page
            if page.next_page_token is None:
                return
            token = page.next_page_token

    def _page(self, token: str, params: dict[str, str]) -> ChangesPage:
        try:
            body = self.http.get_json("changes", {**params, "pageToken": token})
        except DriveError as exc:
            if is_token_refusal(exc):
                raise ChangesTokenInvalid(
                    f"Drive refused the changes page token {token!r}: {exc.message}; "
                    "walk the folder again and take a new start page token",
                    status=exc.status,
                    reason=exc.reason,
                    location=exc.location,
                ) from exc
            raise
        changes = tuple(
            to_change(item)
            for item in body.get("changes") or ()
            if item.get("changeType", "file") == "file"
        )
        next_token, new_start = body.get("nextPageToken"), body.get("newStartPageToken")
        if not next_token and not new_start:
            raise DriveError(
                "changes.list answered with neither nextPageToken nor newStartPageToken"
            )
        return ChangesPage(changes, next_token or None, None if next_token else new_start)

    def read_all(self, token: str, **options: Any) -> ChangesPage:
        """Every change from ``token`` to the end, one per file (its latest), and the new token.

        Raises on any failure part-way, so a caller never acts on a partial feed.
        """
        latest: dict[str, DriveChange] = {}
        pages, new_start = 0, None
        for page in self.pages(token, **options):
            pages += 1
            for change in page.changes:
                latest.pop(change.file_id, None)  # a later entry wins, and moves to the end
                latest[change.file_id] = change
            new_start = page.new_start_page_token
        return ChangesPage(tuple(latest.values()), None, new_start, pages)

    def get_file(self, file_id: str, fields: str = ITEM_FIELDS) -> dict[str, Any]:
        """files.get metadata of one item (for example a parent the caller does not know)."""
        return self.http.get_json(
            file_path(file_id), {"fields": fields, "supportsAllDrives": "true"}
        )
