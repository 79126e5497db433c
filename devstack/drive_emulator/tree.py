"""The served Drive tree: a local directory read fresh from disk on each request.

Layout rules (a contract shared with the Drive client's tests):
- sub-directories are folders, regular files are binary files typed by extension;
- `NAME.gsheet.csv` / `NAME.gsheet.xlsx` is a native Sheet, `NAME.gdoc.txt` a native Doc;
- an optional `.drive.json` per directory overrides metadata per on-disk name;
- ids come from an in-memory registry (devstack.drive_emulator.ids): a new entry's id derives
  from its path, and a move or rename keeps it; a `.drive.json` `id` override wins;
- dot-files are not served.

`refresh()` walks the whole tree (stat only, no hashing) to update the registry and the change
log. It runs when a lookup finds the registry stale, and before every changes.* request.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from devstack.drive_emulator import mime
from devstack.drive_emulator.changelog import ChangeLog
from devstack.drive_emulator.ids import IdRegistry, Observed, observe, path_id

OVERRIDES_FILE = ".drive.json"
OVERRIDE_KEYS = frozenset(
    {"name", "trashed", "id", "mimeType", "modifiedTime", "shortcutTarget", "canDownload"}
)
EntryKind = Literal["folder", "binary", "native", "shortcut"]


def rfc3339(mtime_ns: int) -> str:
    """RFC 3339 UTC timestamp with milliseconds and `Z`, as Drive sends."""
    moment = datetime.fromtimestamp(mtime_ns / 1e9, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class Entry:
    """One Drive item, built from disk state at the moment it was read."""

    id: str
    relpath: str  # posix path relative to the root, "" for the root folder
    name: str
    mime_type: str
    kind: EntryKind
    parent_id: str | None
    modified_time: str
    trashed: bool = False
    size: int | None = None
    md5: str | None = None
    sha256: str | None = None
    source_format: str | None = None  # native files: csv / xlsx / txt on disk
    can_download: bool = True
    shortcut_target_id: str | None = None
    shortcut_target_mime: str | None = None
    mtime_ns: int = 0

    @property
    def is_folder(self) -> bool:
        return self.kind == "folder"


class TreeError(ValueError):
    """The directory tree breaks the layout rules (bad `.drive.json`, bad shortcut...)."""


class DiskTree:
    """Reads entries from `root`; caches checksums and overrides, keyed by mtime/size.

    Keeps the id registry (`ids`) and the change log (`changes`) up to date through
    `refresh()`.
    """

    def __init__(self, root: Path, root_id: str | None = None) -> None:
        self.root = root.resolve()
        if not self.root.is_dir():
            raise TreeError(f"Drive root {self.root} is not a directory")
        self.root_id = root_id or path_id("")
        self.strict = False  # True: a shortcut to a missing target is an error
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._generation = 0  # walks done by refresh()
        self.ids = IdRegistry()
        self.changes = ChangeLog()
        self._checksums: dict[str, tuple[int, int, str, str]] = {}
        self._overrides: dict[str, tuple[int, int, dict[str, dict[str, Any]]]] = {}

    # ---- lookups -------------------------------------------------------------------------
    def root_entry(self) -> Entry:
        """The root folder."""
        st = self.root.stat()
        return Entry(
            id=self.root_id,
            relpath="",
            name=self.root.name,
            mime_type=mime.FOLDER,
            kind="folder",
            parent_id=None,
            modified_time=rfc3339(st.st_mtime_ns),
            mtime_ns=st.st_mtime_ns,
        )

    def get(self, file_id: str) -> Entry | None:
        """Entry with this id, or None; `root` is an alias of the root folder."""
        if file_id in ("root", self.root_id):
            return self.root_entry()
        for attempt in range(2):
            relpath = self.ids.path_of(file_id)
            if relpath is not None:
                entry = self.entry_at(relpath)
                if entry is not None and entry.id == file_id:
                    return entry
            if attempt == 0:
                self.refresh()  # unknown or moved: walk the whole tree once
        return None

    def entry_at(self, relpath: str) -> Entry | None:
        """Entry at an on-disk relative path (posix), or None if it does not exist."""
        relpath = relpath.strip("/")
        if relpath in ("", "."):
            return self.root_entry()
        parent, _, disk_name = relpath.rpartition("/")
        if disk_name.startswith(".") or not (self.root / relpath).exists():
            return None
        return self._build(parent, disk_name)

    def children(self, folder_id: str) -> list[Entry]:
        """Entries directly inside the folder `folder_id` (empty if it is not a folder)."""
        folder = self.get(folder_id)
        if folder is None or not folder.is_folder:
            return []
        return self._scan_dir(folder.relpath)

    def walk(self) -> list[Entry]:
        """Every entry below the root (not the root itself), parents before children."""
        out: list[Entry] = []
        pending = [""]
        while pending:
            rel = pending.pop()
            for entry in self._scan_dir(rel):
                out.append(entry)
                if entry.is_folder:
                    pending.append(entry.relpath)
        return out

    def validate(self) -> int:
        """Walk the whole tree strictly (bad `.drive.json`, missing shortcut targets raise
        TreeError naming the path); returns the number of entries."""
        self.strict = True
        try:
            self.refresh()
            return len(self.walk())
        finally:
            self.strict = False

    def refresh(self) -> int:
        """Walk the whole tree (stat only): update ids and log changes; returns how many."""
        with self._refresh_lock:
            return self._refresh_locked()

    def _refresh_since(self, generation: int) -> None:
        """Refresh, unless another thread finished one after `generation` was read."""
        with self._refresh_lock:
            if self._generation == generation:
                self._refresh_locked()

    def _refresh_locked(self) -> int:
        self._generation += 1
        observed = observe(str(self.root), self._overrides_for)
        ids, moves = self.ids.reconcile(observed)
        with self._lock:  # a moved file keeps its cached checksums
            for old, new in moves:
                cached = self._checksums.pop(os.path.join(self.root, old), None)
                if cached is not None:
                    self._checksums[os.path.join(self.root, new)] = cached
        by_path = {obs.relpath: fid for fid, obs in zip(ids, observed, strict=True)}
        states = [
            (fid, _state(obs, by_path.get(obs.parent_rel, self.root_id)))
            for fid, obs in zip(ids, observed, strict=True)
        ]
        return self.changes.observe(states)

    # ---- building entries ----------------------------------------------------------------
    def _scan_dir(self, rel: str) -> list[Entry]:
        directory = self.root / rel if rel else self.root
        try:
            names = sorted(n for n in os.listdir(directory) if not n.startswith("."))
        except (FileNotFoundError, NotADirectoryError):
            return []
        overrides = self._overrides_for(rel)
        parent_id = self._folder_id(rel)
        entries = []
        for disk_name in names:
            entry = self._build(rel, disk_name, overrides, parent_id)
            if entry is not None:
                entries.append(entry)
        return entries

    def _build(
        self,
        parent_rel: str,
        disk_name: str,
        overrides: dict[str, dict[str, Any]] | None = None,
        parent_id: str | None = None,
    ) -> Entry | None:
        relpath = f"{parent_rel}/{disk_name}" if parent_rel else disk_name
        path = os.path.join(self.root, relpath)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        if overrides is None:
            overrides = self._overrides_for(parent_rel)
        override = overrides.get(disk_name, {})
        if parent_id is None:
            parent_id = self._folder_id(parent_rel)
        file_id = self._id_at(relpath, st, override)
        common: dict[str, Any] = {
            "id": file_id,
            "relpath": relpath,
            "parent_id": parent_id,
            "modified_time": str(override.get("modifiedTime") or rfc3339(st.st_mtime_ns)),
            "trashed": bool(override.get("trashed", False)),
            "can_download": bool(override.get("canDownload", True)),
            "mtime_ns": st.st_mtime_ns,
        }
        if stat.S_ISDIR(st.st_mode):
            name = override.get("name", disk_name)
            return Entry(name=name, mime_type=mime.FOLDER, kind="folder", **common)
        if "shortcutTarget" in override:
            return self._shortcut(disk_name, override, common)
        native = mime.native_kind(disk_name)
        if native is not None:
            drive_name, native_mime, fmt = native
            return Entry(
                name=override.get("name", drive_name),
                mime_type=native_mime,
                kind="native",
                source_format=fmt,
                **common,
            )
        md5, sha256 = self._checksums_for(path, st)
        return Entry(
            name=override.get("name", disk_name),
            mime_type=override.get("mimeType") or mime.for_binary(disk_name),
            kind="binary",
            size=st.st_size,
            md5=md5,
            sha256=sha256,
            **common,
        )

    def _shortcut(self, disk_name: str, override: dict[str, Any], common: dict[str, Any]) -> Entry:
        target_rel = str(override["shortcutTarget"]).strip("/")
        if target_rel == common["relpath"]:
            raise TreeError(f"shortcut {common['relpath']} points at itself")
        target_parent, _, target_name = target_rel.rpartition("/")
        if "shortcutTarget" in self._overrides_for(target_parent).get(target_name, {}):
            raise TreeError(f"shortcut {common['relpath']} points at another shortcut")
        target = self.entry_at(target_rel)
        if target is None and self.strict:
            raise TreeError(f"shortcut {common['relpath']}: target {target_rel!r} does not exist")
        if target is None:  # deleted while serving: Drive keeps dangling shortcuts
            target_id, target_mime = path_id(target_rel), mime.for_binary(target_rel)
        else:
            target_id, target_mime = target.id, target.mime_type
        default_name = disk_name.removesuffix(mime.SHORTCUT_SUFFIX) or disk_name
        return Entry(
            name=override.get("name", default_name),
            mime_type=mime.SHORTCUT,
            kind="shortcut",
            shortcut_target_id=target_id,
            shortcut_target_mime=target_mime,
            **common,
        )

    def _folder_id(self, rel: str) -> str:
        if not rel:
            return self.root_id
        parent, _, name = rel.rpartition("/")
        override = self._overrides_for(parent).get(name, {})
        try:
            st = os.stat(os.path.join(self.root, rel))
        except FileNotFoundError:
            return str(override.get("id") or path_id(rel))
        return self._id_at(rel, st, override)

    def _id_at(self, relpath: str, st: os.stat_result, override: dict[str, Any]) -> str:
        """The registry's id for the entry at `relpath`, refreshing once if it is stale."""
        override_id = str(override["id"]) if override.get("id") else None
        generation = self._generation
        file_id = self.ids.lookup(relpath, st, override_id)
        if file_id is None:
            self._refresh_since(generation)
            file_id = self.ids.lookup(relpath, st, override_id)
        return file_id or path_id(relpath)  # replaced again since the walk: the next one knows

    def _checksums_for(self, path: str, st: os.stat_result) -> tuple[str, str]:
        key = path
        cached = self._checksums.get(key)
        if cached and cached[0] == st.st_mtime_ns and cached[1] == st.st_size:
            return cached[2], cached[3]
        md5, sha256 = hashlib.md5(), hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                md5.update(chunk)
                sha256.update(chunk)
        result = (md5.hexdigest(), sha256.hexdigest())
        with self._lock:
            self._checksums[key] = (st.st_mtime_ns, st.st_size, *result)
        return result

    def _overrides_for(self, rel: str) -> dict[str, dict[str, Any]]:
        path = os.path.join(self.root, rel, OVERRIDES_FILE)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return {}
        cached = self._overrides.get(rel)
        if cached and cached[:2] == (st.st_mtime_ns, st.st_size):
            return cached[2]
        entries = parse_overrides(Path(path))
        with self._lock:
            self._overrides[rel] = (st.st_mtime_ns, st.st_size, entries)
        return entries


def _state(obs: Observed, parent_id: str) -> tuple[Any, ...]:
    """What a change log compares: everything the File resource is rendered from.

    A folder's own mtime is left out: adding a child is a change of the child only.
    """
    content = None if obs.is_dir else (obs.mtime_ns, obs.size)
    override = json.dumps(dict(obs.override), sort_keys=True) if obs.override else ""
    return (parent_id, obs.disk_name, obs.is_dir, content, override)


def parse_overrides(path: Path) -> dict[str, dict[str, Any]]:
    """Read and validate a `.drive.json`; raises TreeError naming the file on any mistake."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TreeError(f"{path}: not valid JSON ({exc})") from exc
    entries = doc.get("entries") if isinstance(doc, dict) else None
    if not isinstance(entries, dict):
        raise TreeError(f'{path}: expected {{"entries": {{"<disk name>": {{...}}}}}}')
    for disk_name, override in entries.items():
        if not isinstance(override, dict):
            raise TreeError(f"{path}: entry {disk_name!r} must be an object")
        unknown = set(override) - OVERRIDE_KEYS
        if unknown:
            raise TreeError(
                f"{path}: entry {disk_name!r} has unknown keys {sorted(unknown)}; "
                f"allowed: {sorted(OVERRIDE_KEYS)}"
            )
    return entries
