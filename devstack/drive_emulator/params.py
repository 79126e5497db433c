"""Query parameters of every served method, as typed in the discovery document, and `Params`.

tests/drive_emulator/test_discovery_schema.py checks every name, type and path here against
drive.v3.json.
"""

from __future__ import annotations

from collections.abc import Mapping

from devstack.drive_emulator.errors import invalid_value

GLOBAL_PARAMS: dict[str, str] = {
    "alt": "string",
    "fields": "string",
    "key": "string",
    "access_token": "string",
    "prettyPrint": "boolean",
    "quotaUser": "string",
}
_ALL_DRIVES = {"supportsAllDrives": "boolean", "supportsTeamDrives": "boolean"}
METHOD_PARAMS: dict[str, dict[str, str]] = {
    "drive.files.list": {
        "corpora": "string",
        "driveId": "string",
        "includeItemsFromAllDrives": "boolean",
        "includeTeamDriveItems": "boolean",
        "orderBy": "string",
        "pageSize": "integer",
        "pageToken": "string",
        "q": "string",
        "spaces": "string",
        **_ALL_DRIVES,
        "teamDriveId": "string",
    },
    "drive.files.get": {"acknowledgeAbuse": "boolean", **_ALL_DRIVES},
    "drive.files.export": {"mimeType": "string"},
    "drive.changes.getStartPageToken": {
        "driveId": "string",
        "teamDriveId": "string",
        **_ALL_DRIVES,
    },
    "drive.changes.list": {
        "driveId": "string",
        "teamDriveId": "string",
        "includeItemsFromAllDrives": "boolean",
        "includeTeamDriveItems": "boolean",
        "includeRemoved": "boolean",
        "pageSize": "integer",
        "pageToken": "string",
        "restrictToMyDrive": "boolean",
        "spaces": "string",
        **_ALL_DRIVES,
    },
    "drive.about.get": {},
    # The feed a channel watches takes the changes.list parameters (notifications only say
    # "something changed"; the caller lists with its own).
    "drive.changes.watch": {
        "driveId": "string",
        "teamDriveId": "string",
        "includeItemsFromAllDrives": "boolean",
        "includeTeamDriveItems": "boolean",
        "includeRemoved": "boolean",
        "pageSize": "integer",
        "pageToken": "string",
        "restrictToMyDrive": "boolean",
        "spaces": "string",
        **_ALL_DRIVES,
    },
    "drive.channels.stop": {},
}
# Methods served with POST (a Channel resource in the body); every other one is a GET.
POST_METHODS = frozenset({"drive.changes.watch", "drive.channels.stop"})
# Served paths, relative to the service path drive/v3/, as in the discovery document.
SERVED_PATHS = {
    "drive.files.list": "files",
    "drive.files.get": "files/{fileId}",
    "drive.files.export": "files/{fileId}/export",
    "drive.changes.getStartPageToken": "changes/startPageToken",
    "drive.changes.list": "changes",
    "drive.about.get": "about",
    "drive.changes.watch": "changes/watch",
    "drive.channels.stop": "channels/stop",
}


class Params:
    """Typed access to query parameters for one method; bad values raise 400 `invalid`."""

    def __init__(self, raw: Mapping[str, str], method: str) -> None:
        self.raw = raw
        self.types = {**GLOBAL_PARAMS, **METHOD_PARAMS[method]}

    def text(self, name: str, default: str | None = None) -> str | None:
        assert self.types[name] == "string", name
        return self.raw.get(name, default)

    def flag(self, *names: str, default: bool = False) -> bool:
        """True if any of the (synonym) boolean parameters is true; ``default`` if none is set."""
        result: bool | None = None
        for name in names:
            assert self.types[name] == "boolean", name
            value = self.raw.get(name)
            if value is None:
                continue
            if value.lower() not in ("true", "false"):
                raise invalid_value(
                    name, f"Invalid value '{value}'. Valid values are: [true, false]"
                )
            result = bool(result) or value.lower() == "true"
        return default if result is None else result

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        assert self.types[name] == "integer", name
        value = self.raw.get(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise invalid_value(
                name, f"Invalid value '{value}'. Value must be an integer."
            ) from None
        if not low <= number <= high:
            raise invalid_value(
                name, f"Invalid value '{value}'. Values must be within the range: [{low}, {high}]"
            )
        return number
