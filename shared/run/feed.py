"""The Drive changes feed as the cheap path of an incremental sync (``source.changes_feed``).

A run with a stored feed position reads ``changes.list`` from it first. When no change lies
under the synced folder (a change is relevant if its id is an input or folder the state knows,
or one of its parents is under the folder, resolved with ``files.get`` and cached per run), the
folder is not walked: every input is reported as the state has it. Otherwise, and when the
token is refused (``ChangesTokenInvalid``, noted in the manifest), the folder id changed, the
request is a ``full_refresh`` or ``since`` run, or the last walk is older than
``reconcile_every_hours``, the folder is walked with the mirror semantics of
:mod:`shared.run.mirror`. A first run takes ``changes.getStartPageToken`` *before* walking.

The position is stored in the state only when the run ended clean (every input recorded, no
removal held back by the guard), so a file that failed to download is found by the next walk.
A feed that fails part-way raises: nothing is decided from a partial feed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.drive.models import FOLDER_MIME, SHORTCUT_MIME
from shared.errors import ChangesTokenInvalid, DriveError
from shared.run.manifest import utc_now
from shared.run.mirror import key_id

if TYPE_CHECKING:
    from shared.config import Source
    from shared.drive import DriveClient, DriveFile
    from shared.drive.models import DriveChange
    from shared.run.state import SyncState

MAX_DEPTH = 64  # parents followed up from a changed file before giving up (and walking)


@dataclass
class FeedCheck:
    """What the feed said before the walk: the token to keep, and whether to walk at all."""

    token: str
    drive_id: str | None
    unchanged: bool = False  # nothing under the folder changed: no walk
    note: str | None = None
    changes: Incremental | None = None  # the changes, applied without a walk


@dataclass
class Incremental:
    """Changes the feed can apply without a walk: the changed files at their paths (``listed``),
    every id they touch, and why the ids gone from the folder are gone."""

    listed: list[DriveFile] = field(default_factory=list)
    touched: set[str] = field(default_factory=set)
    reasons: dict[str, str] = field(default_factory=dict)


def check(
    drive: DriveClient, state: SyncState, folder: str, source: Source, *, walk_forced: str | None
) -> FeedCheck | None:
    """Read the feed from the stored position (or take a start token); ``None`` when off.

    ``walk_forced`` names why this run must walk whatever the feed says (full refresh, ...).
    """
    if not source.changes_feed:
        return None
    feed = state.feed or {}
    drive_id = source.drive_id or feed.get("drive_id")
    reason = walk_forced or _stale(feed, folder, source)
    if reason:
        if drive_id is None:  # a folder in a shared drive has its own feed
            drive_id = drive.get_file(folder, "id,driveId").get("driveId")
        return FeedCheck(drive.start_page_token(drive_id), drive_id, note=reason)
    try:
        page = drive.changes(str(feed["token"]), drive_id=drive_id)
    except ChangesTokenInvalid as exc:
        note = f"changes feed: token refused ({exc.message}); walked the folder"
        return FeedCheck(drive.start_page_token(drive_id), drive_id, note=note)
    token = page.new_start_page_token or str(feed["token"])
    relevant = Relevance(drive, state, feed)
    changed = [c for c in page.changes if relevant(c)]
    if changed:
        applied = apply(changed, state, feed, source)
        if applied is not None:
            note = f"changes feed: {len(changed)} change(s) under the folder, applied unwalked"
            return FeedCheck(token, drive_id, note=note, changes=applied)
        note = f"changes feed: {len(changed)} change(s) under the folder; walked it"
        return FeedCheck(token, drive_id, note=note)
    note = f"changes feed: nothing changed under the folder ({len(page.changes)} elsewhere)"
    return FeedCheck(token, drive_id, unchanged=True, note=note)


def _stale(feed: dict[str, Any], folder: str, source: Source) -> str | None:
    """Why the stored position cannot stand for a walk, or ``None``."""
    if not feed.get("token"):
        return "changes feed: no stored position; walked the folder"
    if feed.get("folder") != folder:
        return "changes feed: the folder id changed; walked the folder"
    walked = feed.get("walked_at")
    every = source.reconcile_every_hours
    if every is not None and walked:
        age = datetime.now(UTC) - datetime.fromisoformat(str(walked).replace("Z", "+00:00"))
        if age > timedelta(hours=every):
            return f"changes feed: last full walk over {every:g} h ago; walked the folder"
    return None


class Relevance:
    """Whether a change lies under the folder (``files.get`` results cached for the run)."""

    def __init__(self, drive: DriveClient, state: SyncState, feed: dict[str, Any]) -> None:
        self.drive = drive
        self.folders = set(feed.get("folders") or ())
        self.known = self.folders | {key_id(k) for k in state.inputs}
        self.outside: set[str] = set()

    def __call__(self, change: DriveChange) -> bool:
        if change.file_id in self.known or change.shortcut_target_id in self.known:
            return True
        if change.removed:
            return False  # an id the state never knew
        return any(self._under(parent) for parent in change.parents)

    def _under(self, folder_id: str) -> bool:
        chain: list[str] = []
        current: str | None = folder_id
        for _ in range(MAX_DEPTH):
            if current is None or current in self.outside:
                break
            if current in self.folders:
                self.folders.update(chain)
                return True
            chain.append(current)
            try:
                parents = self.drive.get_file(current, "id,parents").get("parents") or []
            except DriveError as exc:
                if exc.status == 404:
                    break
                return True  # cannot tell: walk, to be safe
            current = parents[0] if parents else None
        else:
            return True
        self.outside.update(chain)
        return False


def apply(
    changes: list[DriveChange],
    state: SyncState,
    feed: dict[str, Any],
    source: Source,
) -> Incremental | None:
    """Place file changes at their paths, without a walk; ``None`` when only a walk can tell.

    A walk is needed for any folder change (a renamed folder moves every path under it), a
    shortcut, a file with several parents or in a folder the last walk did not see, an id with
    several state entries, and a name that may collide with another file of its folder.
    """
    from shared.drive.filters import FileFilter

    folders = feed.get("folders")
    if not isinstance(folders, dict):
        return None
    filters = FileFilter.build(source.include, source.exclude, None, None)
    entries: dict[str, list[str]] = {}
    for key, entry in state.inputs.items():
        entries.setdefault(key_id(key), []).append(entry.path)
    taken = {path: key_id(key) for key, entry in state.inputs.items() for path in [entry.path]}
    result = Incremental()
    for change in changes:
        file_id = change.file_id
        if file_id in folders or len(entries.get(file_id, ())) > 1 or change.shortcut_target_id:
            return None
        result.touched.add(file_id)
        if change.removed or change.file is None:
            result.reasons[file_id] = "deleted (or no longer readable by these credentials)"
            continue
        if change.file.mime_type in (FOLDER_MIME, SHORTCUT_MIME) or len(change.parents) != 1:
            return None
        if change.trashed:
            result.reasons[file_id] = "trashed"
            continue
        parent = change.parents[0]
        known = entries.get(file_id, [])
        if parent not in folders or any("~" in p for p in known):
            # A folder the last walk did not see, a shortcut's target outside the folder or a
            # file moved out (a walk tells them apart), or a name the walk had tagged.
            return None
        prefix = folders[parent]
        path = f"{prefix}/{change.file.name}" if prefix else change.file.name
        if taken.get(path, file_id) != file_id:
            return None  # the walk would tag colliding names
        taken[path] = file_id
        if not filters.accepts(path, change.file.mime_type, change.file.modified_time):
            result.reasons[file_id] = "excluded by the pipeline's filters"
            continue
        result.listed.append(replace(change.file, path=path))
    return result


def kept_position(check: FeedCheck, state: SyncState) -> dict[str, Any]:
    """The stored position moved on to ``check.token``, after a run that did not walk."""
    return {**(state.feed or {}), "token": check.token}


def position(check: FeedCheck, folder: str, folders: dict[str, str]) -> dict[str, Any]:
    """The feed position to store after a walk that listed ``folders`` (id -> path)."""
    return {
        "token": check.token,
        "folder": folder,
        "drive_id": check.drive_id,
        "folders": dict(sorted(folders.items())),
        "walked_at": utc_now(),
    }
