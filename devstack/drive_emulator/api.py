"""files.list / files.get / files.export semantics, independent of HTTP plumbing."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from devstack.drive_emulator.errors import ApiError, invalid_value, not_found
from devstack.drive_emulator.exports import EXPORT_FORMATS
from devstack.drive_emulator.fields import (
    apply_mask,
    requested_mask,
    validate_file_mask,
    validate_list_mask,
)
from devstack.drive_emulator.params import (  # noqa: F401  re-exported
    GLOBAL_PARAMS,
    METHOD_PARAMS,
    POST_METHODS,
    SERVED_PATHS,
    Params,
)
from devstack.drive_emulator.query import QueryError, parse, resolve_alias
from devstack.drive_emulator.tree import DiskTree, Entry

DEFAULT_FILE_MASK = "kind,id,name,mimeType"
MAX_PAGE_SIZE = 1000
_SORT_KEYS: dict[str, Callable[[Entry], Any]] = {
    "folder": lambda e: not e.is_folder,
    "name": lambda e: e.name.lower(),
    "name_natural": lambda e: e.name.lower(),
    "modifiedTime": lambda e: e.modified_time,
    "createdTime": lambda e: e.modified_time,
    "recency": lambda e: e.modified_time,
    "quotaBytesUsed": lambda e: e.size or 0,
}
_CONSTANT_SORT_KEYS = {"starred", "viewedByMeTime", "sharedWithMeTime", "modifiedByMeTime"}


@dataclass(frozen=True)
class DriveSettings:
    """The emulated account: shared-drive id (or None for My Drive) and page-size cap."""

    drive_id: str | None = None
    page_size_cap: int | None = None


class DriveApi:
    """The three read methods over a DiskTree."""

    def __init__(self, tree: DiskTree, settings: DriveSettings) -> None:
        self.tree = tree
        self.settings = settings

    # ---- files.get ------------------------------------------------------------------------
    def lookup(self, file_id: str, params: Params) -> Entry:
        """Entry visible to this request, or 404 `notFound`."""
        entry = self.tree.get(file_id)
        if entry is None:
            raise not_found(file_id)
        if self.settings.drive_id and not params.flag("supportsAllDrives", "supportsTeamDrives"):
            raise not_found(file_id)  # shared-drive items are invisible without the flag
        return entry

    def get_file(self, file_id: str, params: Params, base_url: str) -> dict[str, Any]:
        """files.get metadata, masked by `fields`."""
        entry = self.lookup(file_id, params)
        mask = requested_mask(params, validate_file_mask, DEFAULT_FILE_MASK)
        return apply_mask(self.resource(entry, base_url), mask)

    # ---- files.list -----------------------------------------------------------------------
    def list_files(
        self, params: Params, base_url: str, incomplete_batches: str | None = None
    ) -> dict[str, Any]:
        """files.list: filter, order, page and mask.

        With ``incomplete_batches`` ("flagged" or "silent"), a query over several parents
        answers for the first of them (sorted) only, as Drive sometimes does (rclone #3114);
        "flagged" also sets ``incompleteSearch: true``.
        """
        page_size = params.integer("pageSize", 100, 1, MAX_PAGE_SIZE)
        if self.settings.page_size_cap:
            page_size = min(page_size, self.settings.page_size_cap)
        visible = self._list_visible(params)
        spaces = params.text("spaces", "drive") or "drive"
        if any(s.strip() not in ("drive", "appDataFolder") for s in spaces.split(",")):
            raise invalid_value("spaces")
        q_text = params.text("q")
        try:
            query = parse(q_text) if q_text else None
        except QueryError:
            raise invalid_value("q") from None
        order = self._order(params.text("orderBy"))
        mask = requested_mask(
            params,
            validate_list_mask,
            f"kind,incompleteSearch,nextPageToken,files({DEFAULT_FILE_MASK})",
        )
        entries: list[Entry] = []
        incomplete = False
        if visible and "drive" in spaces:
            if query is not None:
                query = resolve_alias(query, "root", self.tree.root_id)
            parents = query.parent_ids() if query is not None else None
            if parents is None:
                candidates = self.tree.walk()
            else:
                partial = incomplete_batches is not None and len(parents) > 1
                answered = sorted(parents)[:1] if partial else sorted(parents)
                candidates = [e for pid in answered for e in self.tree.children(pid)]
                incomplete = partial and incomplete_batches == "flagged"
            entries = [e for e in candidates if query is None or query.matches(e)]
        entries = order(entries)
        fingerprint = _fingerprint(params)
        offset = _decode_token(params.text("pageToken"), fingerprint)
        page = entries[offset : offset + page_size]
        body: dict[str, Any] = {"kind": "drive#fileList", "incompleteSearch": incomplete}
        if offset + page_size < len(entries):
            body["nextPageToken"] = _encode_token(offset + page_size, fingerprint)
        body["files"] = [self.resource(e, base_url) for e in page]
        return apply_mask(body, mask)

    def _list_visible(self, params: Params) -> bool:
        """Apply corpora / driveId / all-drives rules; True if the tree's items are listed."""
        corpora = params.text("corpora") or "user"
        drive_id = params.text("driveId") or params.text("teamDriveId")
        include = params.flag("includeItemsFromAllDrives", "includeTeamDriveItems")
        supports = params.flag("supportsAllDrives", "supportsTeamDrives")
        if any(c not in ("user", "domain", "drive", "allDrives") for c in corpora.split(",")):
            raise invalid_value("corpora")
        if bool(drive_id) != (corpora == "drive"):
            raise ApiError(
                400,
                "teamDriveIdRequiresTeamDriveCorpora",
                "The driveId parameter must be specified if and only if corpora is set to drive.",
            )
        if (drive_id or corpora in ("drive", "allDrives")) and not include:
            raise ApiError(
                403,
                "forbidden",
                "The includeItemsFromAllDrives parameter must be set to true when driveId is "
                "specified or corpora contains drive or allDrives.",
                location="includeItemsFromAllDrives",
            )
        if drive_id and drive_id != self.settings.drive_id:
            raise ApiError(
                404, "notFound", f"Shared drive not found: {drive_id}", location="driveId"
            )
        if self.settings.drive_id is None:
            return True  # My Drive: visible in every corpus that includes the user's files
        return include and supports and corpora in ("drive", "allDrives")

    def _order(self, order_by: str | None) -> Callable[[list[Entry]], list[Entry]]:
        keys: list[tuple[str, bool]] = []
        for part in (order_by or "").split(","):
            words = part.split()
            if not words:
                continue
            desc = len(words) == 2 and words[1].lower() == "desc"
            if len(words) > 2 or (len(words) == 2 and not desc and words[1].lower() != "asc"):
                raise invalid_value("orderBy")
            if words[0] not in _SORT_KEYS and words[0] not in _CONSTANT_SORT_KEYS:
                raise invalid_value("orderBy")
            keys.append((words[0], desc))

        def order(entries: list[Entry]) -> list[Entry]:
            result = sorted(entries, key=lambda e: (e.relpath, e.id))
            for key, desc in reversed(keys):
                if key in _SORT_KEYS:
                    result.sort(key=_SORT_KEYS[key], reverse=desc)
            return result

        return order

    # ---- rendering ------------------------------------------------------------------------
    def resource(self, entry: Entry, base_url: str) -> dict[str, Any]:
        """The full File resource for an entry (before masking)."""
        out: dict[str, Any] = {
            "kind": "drive#file",
            "id": entry.id,
            "name": entry.name,
            "mimeType": entry.mime_type,
            "trashed": entry.trashed,
            "explicitlyTrashed": entry.trashed,
            "createdTime": entry.modified_time,
            "modifiedTime": entry.modified_time,
            "starred": False,
            "shared": bool(self.settings.drive_id),
            "isAppAuthorized": False,
            "capabilities": {
                "canDownload": entry.can_download,
                "canListChildren": entry.is_folder,
                "canEdit": False,
                "canCopy": not entry.is_folder,
                "canTrash": False,
            },
        }
        if entry.parent_id is not None:
            out["parents"] = [entry.parent_id]
        if self.settings.drive_id:
            out["driveId"] = self.settings.drive_id
        if entry.kind == "binary":
            out["size"] = str(entry.size)
            out["quotaBytesUsed"] = str(entry.size)
            out["md5Checksum"] = entry.md5
            out["sha256Checksum"] = entry.sha256
            out["originalFilename"] = entry.name
            if "." in entry.name:
                out["fileExtension"] = entry.name.rsplit(".", 1)[1]
        else:
            out["quotaBytesUsed"] = "0"
        if entry.kind == "native":
            out["exportLinks"] = {
                target: f"{base_url}/files/{entry.id}/export?mimeType={target}"
                for target in EXPORT_FORMATS.get(entry.mime_type, ())
            }
        if entry.kind == "shortcut":
            out["shortcutDetails"] = {
                "targetId": entry.shortcut_target_id,
                "targetMimeType": entry.shortcut_target_mime,
            }
        return out


def _fingerprint(params: Params) -> str:
    relevant = {k: params.raw.get(k) for k in sorted(METHOD_PARAMS["drive.files.list"])}
    relevant.pop("pageToken")
    relevant.pop("pageSize")
    return hashlib.sha1(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:12]


def _encode_token(offset: int, fingerprint: str) -> str:
    raw = json.dumps({"o": offset, "f": fingerprint}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str | None, fingerprint: str) -> int:
    if not token:
        return 0
    try:
        padded = token + "=" * (-len(token) % 4)
        doc = json.loads(base64.urlsafe_b64decode(padded.encode()))
        offset = doc["o"]
        valid = isinstance(offset, int) and offset >= 0 and doc["f"] == fingerprint
    except (ValueError, KeyError, TypeError):
        valid = False
    if not valid:
        raise invalid_value("pageToken")
    return offset
