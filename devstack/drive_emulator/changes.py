"""changes.getStartPageToken, changes.list and about.get over a DiskTree and its ChangeLog."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from devstack.drive_emulator.errors import ApiError, invalid_value
from devstack.drive_emulator.exports import EXPORT_FORMATS
from devstack.drive_emulator.fields import (
    apply_mask,
    requested_mask,
    validate_about_mask,
    validate_change_list_mask,
    validate_start_page_token_mask,
)
from devstack.drive_emulator.params import Params

if TYPE_CHECKING:
    from devstack.drive_emulator.api import DriveApi
    from devstack.drive_emulator.watch import WatchApi

DEFAULT_CHANGE_LIST_MASK = (
    "kind,nextPageToken,newStartPageToken,"
    "changes(kind,type,changeType,time,removed,fileId,file(kind,id,name,mimeType))"
)
MAX_PAGE_SIZE = 1000
EMULATOR_USER = {
    "kind": "drive#user",
    "displayName": "Drive Emulator",
    "emailAddress": "emulator@drivepipe.local",
    "me": True,
    "permissionId": "00000000000000000001",
}
FIELDS_REQUIRED = "The 'fields' parameter is required for this method."


class ChangesApi:
    """The changes feed and about.get; `files` renders File resources and knows the settings."""

    def __init__(self, files: DriveApi) -> None:
        self.files = files
        self.tree = files.tree
        self.drive_id = files.settings.drive_id

    # ---- changes.getStartPageToken ---------------------------------------------------------
    def start_page_token(self, params: Params) -> dict[str, Any]:
        """The token for "now", after noticing everything that changed on disk so far."""
        self._check_drive(params.text("driveId") or params.text("teamDriveId"))
        mask = requested_mask(params, validate_start_page_token_mask, "kind,startPageToken")
        self.tree.refresh()
        body = {"kind": "drive#startPageToken", "startPageToken": self.tree.changes.start_token()}
        return apply_mask(body, mask)

    # ---- changes.list -----------------------------------------------------------------------
    def list_changes(self, params: Params, base_url: str) -> dict[str, Any]:
        """One page of changes since `pageToken`: each file once, in its latest state."""
        token = params.text("pageToken")
        if token is None:
            raise ApiError(400, "required", "Required parameter: pageToken", location="pageToken")
        page_size = params.integer("pageSize", 100, 1, MAX_PAGE_SIZE)
        if self.files.settings.page_size_cap:
            page_size = min(page_size, self.files.settings.page_size_cap)
        include_removed = params.flag("includeRemoved", default=True)
        spaces = params.text("spaces", "drive") or "drive"
        if any(s.strip() not in ("drive", "appDataFolder") for s in spaces.split(",")):
            raise invalid_value("spaces")
        visible = self._visible(params) and "drive" in spaces
        mask = requested_mask(params, validate_change_list_mask, DEFAULT_CHANGE_LIST_MASK)
        self.tree.refresh()
        logged, next_token, new_start = self.tree.changes.page(token, page_size, include_removed)
        changes = []
        for change in logged if visible else []:
            entry = None if change.removed else self.tree.get(change.file_id)
            item: dict[str, Any] = {
                "kind": "drive#change",
                "type": "file",
                "changeType": "file",
                "time": change.time,
                "removed": entry is None,
                "fileId": change.file_id,
            }
            if self.drive_id:
                item["driveId"] = self.drive_id
            if entry is not None:
                item["file"] = self.files.resource(entry, base_url)
            elif not include_removed:
                continue  # vanished between the walk and now: a removal, not asked for
            changes.append(item)
        body: dict[str, Any] = {"kind": "drive#changeList"}
        if next_token is not None:
            body["nextPageToken"] = next_token
        else:
            body["newStartPageToken"] = new_start
        body["changes"] = changes
        return apply_mask(body, mask)

    # ---- changes.watch ----------------------------------------------------------------------
    def watch(self, params: Params, body: Any, base_url: str, channels: WatchApi) -> dict[str, Any]:
        """Open a notification channel on the feed from `pageToken` (required, checked)."""
        token = params.text("pageToken")
        if token is None:
            raise ApiError(400, "required", "Required parameter: pageToken", location="pageToken")
        self.tree.refresh()  # changes before the channel opened are not its notifications
        self.tree.changes.page(token, 1, True)  # 400 invalid for an unknown or expired token
        return channels.watch(body, token, visible=self._visible(params), base_url=base_url)

    def _visible(self, params: Params) -> bool:
        """Whether this request sees the tree's items (shared-drive flags, scope)."""
        drive_id = params.text("driveId") or params.text("teamDriveId")
        self._check_drive(drive_id)
        include = params.flag("includeItemsFromAllDrives", "includeTeamDriveItems")
        supports = params.flag("supportsAllDrives", "supportsTeamDrives")
        if self.drive_id is None:
            return True  # My Drive: the user's own feed
        if params.flag("restrictToMyDrive"):
            return False
        # Shared-drive items are returned only to apps that say they handle them.
        return include and supports

    def _check_drive(self, drive_id: str | None) -> None:
        if drive_id and drive_id != self.drive_id:
            raise ApiError(
                404, "notFound", f"Shared drive not found: {drive_id}", location="driveId"
            )

    # ---- about.get --------------------------------------------------------------------------
    def about(self, params: Params) -> dict[str, Any]:
        """about.get: `fields` is required, as Drive requires it for the about resource."""
        if not params.text("fields"):
            raise ApiError(400, "required", FIELDS_REQUIRED, location="fields")
        mask = requested_mask(params, validate_about_mask, "")
        body = {
            "kind": "drive#about",
            "user": dict(EMULATOR_USER),
            "storageQuota": {
                "limit": str(15 * 1024**3),
                "usage": "0",
                "usageInDrive": "0",
                "usageInDriveTrash": "0",
            },
            "maxUploadSize": str(5 * 1024**4),
            "appInstalled": False,
            "canCreateDrives": False,
            "exportFormats": {src: list(targets) for src, targets in EXPORT_FORMATS.items()},
            "importFormats": {},
            "maxImportSizes": {},
            "folderColorPalette": [],
            "driveThemes": [],
        }
        return apply_mask(body, mask)
