"""Recursive folder listing with files.list: pages, shortcuts, cycles, names, parallel folders.

Folders are listed in parallel, several per query (``('a' in parents or 'b' in parents)``),
as rclone's fast-list does. Drive can answer such a batched query with only some parents'
children (rclone #3114, #4289, #9810), sometimes saying so (``incompleteSearch: true``) and
sometimes not. So: a batch flagged incomplete is listed again folder by folder and batching
stops for the rest of the walk; a folder that got no children from a batch in which other
folders did (or in which nobody did) is listed again on its own. Shared drives, where the
bug was reported, are listed one folder per query from the start. The check costs one query
per genuinely empty folder; with ``modified_since``, folders holding only unchanged files
look empty too, so incremental walks save fewer queries by batching.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from shared.drive.filters import FileFilter, drive_timestamp
from shared.drive.http import DriveHttp
from shared.drive.models import FOLDER_MIME, NATIVE_PREFIX, SHEET_MIME, SHORTCUT_MIME, DriveFile
from shared.drive.naming import unique_names
from shared.errors import DriveError
from shared.log import get_logger

log = get_logger("drive")  # under drivepipe: JSON lines in the cloud, like every module

ITEM_FIELDS = (
    "id,name,mimeType,md5Checksum,sha256Checksum,size,modifiedTime,parents,shortcutDetails,"
    "capabilities/canDownload,trashed,driveId"
)
LIST_FIELDS = f"nextPageToken,incompleteSearch,files({ITEM_FIELDS})"
PAGE_SIZE = 1000
MAX_PARENTS_PER_QUERY = 50


def quote_q(value: str) -> str:
    """Escape a value for a single-quoted string in a files.list ``q``."""
    return value.replace("\\", "\\\\").replace("'", "\\'")


def file_path(file_id: str) -> str:
    """URL path of one file resource."""
    return f"files/{quote(file_id, safe='')}"


def skip_reason_for(item: dict[str, Any]) -> str | None:
    """Why a listed (non-folder) item can't be fetched, or None if it can."""
    mime = item.get("mimeType", "")
    if mime.startswith(NATIVE_PREFIX) and mime != SHEET_MIME:
        kind = mime.removeprefix(NATIVE_PREFIX)
        return f"native Google {kind} ({mime}) has no binary content; only Sheets are exported"
    if (item.get("capabilities") or {}).get("canDownload") is False:
        return "the owner disabled downloads (capabilities.canDownload = false)"
    return None


def to_drive_file(item: dict[str, Any], *, name: str, path: str) -> DriveFile:
    """Build a DriveFile from a files resource (the target's, for shortcuts)."""
    mime = item.get("mimeType", "application/octet-stream")
    size = item.get("size")
    return DriveFile(
        id=item["id"],
        name=name,
        path=path,
        mime_type=mime,
        size=int(size) if size is not None else None,
        md5=item.get("md5Checksum"),
        sha256=item.get("sha256Checksum"),
        modified_time=item.get("modifiedTime", ""),
        native=mime.startswith(NATIVE_PREFIX),
        skip_reason=skip_reason_for(item),
    )


@dataclass
class Listing:
    """Children of the queried folders, and whether Drive flagged any page incomplete."""

    children: dict[str, list[dict[str, Any]]]
    incomplete: bool = False


@dataclass
class _FolderScan:
    files: list[DriveFile]
    folders: list[tuple[str, str]]  # (folder id, path)
    relist: list[tuple[str, str]] = field(default_factory=list)  # suspect batched answers


class TreeWalker:
    """Walks a folder tree; one instance per walk (it holds the filter and shared-drive id)."""

    def __init__(self, http: DriveHttp, filters: FileFilter, *, drive_id: str | None):
        self.visited: set[str] = set()
        self.folder_paths: dict[str, str] = {}  # folder id -> path in the walk ("" the root)
        self.http = http
        self.filters = filters
        self.drive_id = drive_id
        self.batching = True  # off for good once Drive flags a batched query incomplete

    def get_item(self, file_id: str) -> dict[str, Any]:
        """files.get metadata of one item."""
        params = {"fields": ITEM_FIELDS, "supportsAllDrives": "true"}
        return self.http.get_json(file_path(file_id), params)

    def list_children(self, folder_ids: Sequence[str]) -> Listing:
        """Every non-trashed child of each folder, following nextPageToken to the end.

        Several folders share one query (``'a' in parents or 'b' in parents``); children are
        sorted back to their folders by their ``parents`` field. The result is as Drive sent
        it: see ``complete_children`` for the check against partial batched answers.
        """
        parents = " or ".join(f"'{quote_q(folder_id)}' in parents" for folder_id in folder_ids)
        if len(folder_ids) > 1:
            parents = f"({parents})"
        query = f"{parents} and trashed = false"
        if self.filters.modified_since is not None:
            since = drive_timestamp(self.filters.modified_since)
            query += (
                f" and (mimeType = '{FOLDER_MIME}' or mimeType = '{SHORTCUT_MIME}'"
                f" or modifiedTime > '{since}')"
            )
        params: dict[str, Any] = {
            "q": query,
            "pageSize": PAGE_SIZE,
            "fields": LIST_FIELDS,
            "supportsAllDrives": "true",
            "includeItemsFromAllDrives": "true",
        }
        if self.drive_id:
            params.update(corpora="drive", driveId=self.drive_id)
        listing = Listing({folder_id: [] for folder_id in folder_ids})
        children = listing.children
        seen_tokens: set[str] = set()
        while True:
            body = self.http.get_json("files", params)
            listing.incomplete = listing.incomplete or body.get("incompleteSearch") is True
            for item in body.get("files", []):
                if item.get("trashed"):
                    continue
                if len(folder_ids) == 1:
                    children[folder_ids[0]].append(item)
                    continue
                for parent in item.get("parents") or ():
                    if parent in children:
                        children[parent].append(item)
            token = body.get("nextPageToken")
            if not token:
                return listing
            if token in seen_tokens:
                raise DriveError(f"files.list repeated a page token for folders {folder_ids}")
            seen_tokens.add(token)
            params["pageToken"] = token

    def _resolve(self, item: dict[str, Any]) -> dict[str, Any] | None:
        """The item itself, or a shortcut's live target (None if gone or trashed)."""
        if item.get("mimeType") != SHORTCUT_MIME:
            return item
        target_id = (item.get("shortcutDetails") or {}).get("targetId")
        if not target_id:
            log.warning("shortcut %r has no target; skipped", item.get("name"))
            return None
        try:
            target = self.get_item(target_id)
        except DriveError as exc:
            if exc.status == 404:
                log.warning("shortcut %r points to a missing file; skipped", item.get("name"))
                return None
            raise
        return None if target.get("trashed") else target

    def complete_children(
        self, folder_ids: Sequence[str]
    ) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
        """Children of each folder from one (batched) query, and the folders to list again.

        A batch flagged ``incompleteSearch`` is untrusted as a whole (and batching stops for
        this walk); otherwise each folder the batch returned nothing for is a suspect, since
        Drive may silently drop some parents' children. Suspects get their own queries.
        """
        listing = self.list_children(folder_ids)
        stats = self.http.stats
        if len(folder_ids) == 1:
            if listing.incomplete:
                stats.add_listing("incomplete_single")
                log.warning("Drive flagged the listing of folder %s incomplete", folder_ids[0])
            return listing.children, []
        stats.add_listing("batched_queries")
        if listing.incomplete:
            stats.add_listing("incomplete_batches")
            if self.batching:
                log.warning(
                    "Drive flagged a query over %d folders incomplete; listing them one by one "
                    "and batching no more in this walk",
                    len(folder_ids),
                )
            self.batching = False
            suspects = list(folder_ids)
        else:
            suspects = [folder_id for folder_id in folder_ids if not listing.children[folder_id]]
        if suspects:
            stats.add_listing("relisted_folders", len(suspects))
        return listing.children, suspects

    def scan_folders(self, batch: Sequence[tuple[str, str]]) -> _FolderScan:
        """List folders given as ``(id, path)``: their files (named uniquely) and sub-folders.

        Folders whose batched answer is suspect are not scanned but returned in ``relist``.
        """
        children, suspects = self.complete_children([folder_id for folder_id, _ in batch])
        suspect = set(suspects)
        scan = _FolderScan(files=[], folders=[], relist=[f for f in batch if f[0] in suspect])
        for folder_id, prefix in batch:
            if folder_id not in suspect:
                self._add_children(scan, children[folder_id], prefix)
        scan.files.sort(key=lambda f: f.path)
        return scan

    def _add_children(self, scan: _FolderScan, items: list[dict[str, Any]], prefix: str) -> None:
        entries: list[tuple[dict[str, Any], dict[str, Any]]] = []
        for item in items:
            target = self._resolve(item)
            if target is not None:
                entries.append((item, target))
        names = unique_names([(item["id"], item.get("name", "")) for item, _ in entries])
        for item, target in entries:
            segment = names[item["id"]]
            path = f"{prefix}/{segment}" if prefix else segment
            if target.get("mimeType") == FOLDER_MIME:
                scan.folders.append((target["id"], path))
            else:
                scan.files.append(to_drive_file(target, name=item.get("name", ""), path=path))

    def batches(self, folders: list[tuple[str, str]], workers: int) -> list[list[tuple[str, str]]]:
        """Group folders into queries: one each while workers are free, more when they're not.

        Shared drives get one folder per query: grouped parent queries there can come back
        incomplete (rclone #3114).
        """
        if self.drive_id or not self.batching:
            size = 1
        else:
            size = min(MAX_PARENTS_PER_QUERY, max(1, math.ceil(len(folders) / workers)))
        return [folders[i : i + size] for i in range(0, len(folders), size)]

    def _check_root(self, root_id: str) -> dict[str, Any]:
        try:
            root = self.get_item(root_id)
        except DriveError as exc:
            if exc.status != 404:
                raise
            raise DriveError(
                f"Drive folder {root_id} not found ({exc.message}); check the folder id "
                "(--folder or the pipeline's source.folder_id) and that the folder is shared "
                "with these credentials",
                status=exc.status,
                reason=exc.reason,
            ) from None
        if root.get("mimeType") != FOLDER_MIME:
            raise DriveError(
                f"{root_id} is not a folder (mimeType {root.get('mimeType')!r})",
                reason="notAFolder",
            )
        return root

    def walk(self, root_id: str, *, workers: int) -> Iterator[DriveFile]:
        """Yield every accepted file under ``root_id``; folders are listed in parallel."""
        visited = self.visited = {root_id}  # every folder walked (read it once the walk ends)
        self.folder_paths = {root_id: ""}
        pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="drive-walk")
        try:
            root_check = pool.submit(self._check_root, root_id)
            first_scan = pool.submit(self.scan_folders, [(root_id, "")])
            root = root_check.result()
            if self.drive_id is None and root.get("driveId"):
                # The root lives in a shared drive: list it with corpora=drive instead.
                first_scan.cancel()
                self.drive_id = root["driveId"]
                first_scan = pool.submit(self.scan_folders, [(root_id, "")])
            pending: set[Future[_FolderScan]] = {first_scan}
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                new_folders: list[tuple[str, str]] = []
                files: list[DriveFile] = []
                for future in done:
                    scan = future.result()
                    files.extend(scan.files)
                    # Already visited: each gets its own query, on as many threads as free.
                    for folder in scan.relist:
                        pending.add(pool.submit(self.scan_folders, [folder]))
                    for folder_id, path in scan.folders:
                        if folder_id in visited:
                            log.info(
                                "folder %s at %r already walked (cycle); skipped", folder_id, path
                            )
                            continue
                        visited.add(folder_id)
                        self.folder_paths[folder_id] = path
                        new_folders.append((folder_id, path))
                free_workers = max(1, workers - len(pending))
                for batch in self.batches(new_folders, free_workers):
                    pending.add(pool.submit(self.scan_folders, batch))
                for file in files:
                    if self.filters.accepts(file.path, file.mime_type, file.modified_time):
                        yield file
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
