"""Stable ids for the served tree: a move or a rename on disk keeps the id, as in Drive.

The registry lives in memory and remembers, per id, the last place and identity of its entry:
(device, inode, mtime_ns, size). An `observe` walk of the whole tree is matched against it by
`IdRegistry.reconcile`, in this order:

1. a `.drive.json` `id` override names the entry at that disk name;
2. same inode at the same path: the same entry (edited in place);
3. same inode, mtime and size at another path: the entry was moved or renamed (`os.rename`
   keeps all three, for files and directories). A different mtime or size there is a new
   entry, because ext4 hands a freed inode to the next new file at once;
4. same path, another inode: the same entry, replaced (an editor's save-by-rename);
5. anything else is new: `path_id(relpath)`, or a fresh variant of it if that id was ever
   issued before (a file deleted and created again gets a new id, as in Drive).

Limits: an entry both moved and changed between two walks (a file edited, a folder whose
children changed) looks like a removal plus an addition; ids of moved entries last for the
emulator's lifetime (a restart derives ids from the current paths again).
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
import threading
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

OverridesFor = Callable[[str], Mapping[str, Mapping[str, Any]]]
_NO_OVERRIDE: Mapping[str, Any] = {}


def path_id(relpath: str) -> str:
    """Stable Drive-like id (33 url-safe chars) for an on-disk path relative to the root."""
    digest = hashlib.sha256(f"drivepipe-emulator:{relpath}".encode()).digest()
    return "1" + base64.urlsafe_b64encode(digest).decode()[:32]


class Observed(NamedTuple):
    """One on-disk entry as a walk saw it (no checksums: walks never read file bodies)."""

    relpath: str
    parent_rel: str  # "" for entries directly under the root
    disk_name: str
    is_dir: bool
    dev: int
    ino: int
    mtime_ns: int
    size: int
    override: Mapping[str, Any]
    override_id: str | None  # the `.drive.json` `id`, if any


def observe(root: str, overrides_for: OverridesFor) -> list[Observed]:
    """Every served entry below `root`, parents before children, in a deterministic order."""
    out: list[Observed] = []
    pending = [""]
    while pending:
        rel = pending.pop(0)
        try:
            with os.scandir(os.path.join(root, rel) if rel else root) as it:
                items = sorted((e for e in it if not e.name.startswith(".")), key=_name)
        except (FileNotFoundError, NotADirectoryError):
            continue
        overrides = overrides_for(rel)
        prefix = f"{rel}/" if rel else ""
        for item in items:
            try:
                st = item.stat()  # follows symlinks, like the entries served
            except FileNotFoundError:
                continue
            is_dir = stat.S_ISDIR(st.st_mode)
            override = overrides.get(item.name, _NO_OVERRIDE)
            relpath = prefix + item.name
            out.append(
                Observed(
                    relpath,
                    rel,
                    item.name,
                    is_dir,
                    st.st_dev,
                    st.st_ino,
                    st.st_mtime_ns,
                    0 if is_dir else st.st_size,
                    override,
                    str(override["id"]) if override.get("id") else None,
                )
            )
            if is_dir:
                pending.append(relpath)
    return out


def _name(entry: os.DirEntry[str]) -> str:
    return entry.name


class IdRegistry:
    """Maps ids to where their entries are; thread-safe. See the module docstring."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, Observed] = {}  # id -> last observation
        self._by_path: dict[str, str] = {}  # relpath -> id
        self._issued: set[str] = set()

    def lookup(self, relpath: str, st: os.stat_result, override_id: str | None) -> str | None:
        """The id of the entry at `relpath`, or None when the registry may be stale there."""
        if override_id:
            return override_id
        with self._lock:
            file_id = self._by_path.get(relpath)
            seen = self._seen.get(file_id) if file_id else None
        if seen is None or seen.override_id is not None:
            return None
        if (seen.dev, seen.ino, seen.is_dir) != (st.st_dev, st.st_ino, stat.S_ISDIR(st.st_mode)):
            return None
        return file_id

    def path_of(self, file_id: str) -> str | None:
        """Where `file_id` was last seen, or None if it is unknown."""
        with self._lock:
            seen = self._seen.get(file_id)
        return seen.relpath if seen else None

    def reconcile(self, observed: list[Observed]) -> tuple[list[str], list[tuple[str, str]]]:
        """Match a full walk against the registry (rules 1-5 of the module docstring).

        Returns the id of each observed entry, and the (old, new) relpaths of entries that
        kept their id at another path.
        """
        with self._lock:
            ids: list[str | None] = [None] * len(observed)
            claimed: set[str] = set()

            def claim(index: int, file_id: str | None) -> None:
                if file_id is not None and file_id not in claimed and ids[index] is None:
                    ids[index] = file_id
                    claimed.add(file_id)

            for i, obs in enumerate(observed):  # 1: overrides
                claim(i, obs.override_id)
            for i, obs in enumerate(observed):  # 2: same path, same inode (the common case)
                seen = self._registered_at(obs.relpath)
                if seen is not None and (seen.dev, seen.ino, seen.is_dir) == (
                    obs.dev,
                    obs.ino,
                    obs.is_dir,
                ):
                    claim(i, self._by_path[obs.relpath])
            if None in ids:
                self._match_moves(observed, ids, claim)  # 3
                for i, obs in enumerate(observed):  # 4: same path, replaced
                    seen = self._registered_at(obs.relpath)
                    if seen is not None and seen.is_dir == obs.is_dir:
                        claim(i, self._by_path[obs.relpath])
                for i, obs in enumerate(observed):  # 5: new
                    if ids[i] is None:
                        claim(i, self._fresh_id(obs.relpath, claimed))
            final = [fid for fid in ids if fid is not None]
            moves = [
                (seen.relpath, obs.relpath)
                for fid, obs in zip(final, observed, strict=True)
                if (seen := self._seen.get(fid)) is not None and seen.relpath != obs.relpath
            ]
            self._seen = dict(zip(final, observed, strict=True))
            self._by_path = {obs.relpath: fid for fid, obs in self._seen.items()}
            self._issued.update(final)
            return final, moves

    def _registered_at(self, relpath: str) -> Observed | None:
        """The last observation registered at `relpath`, unless it was an override's."""
        file_id = self._by_path.get(relpath)
        seen = self._seen.get(file_id) if file_id else None
        return None if seen is None or seen.override_id is not None else seen

    def _match_moves(
        self,
        observed: list[Observed],
        ids: list[str | None],
        claim: Callable[[int, str | None], None],
    ) -> None:
        """Rule 3: an unclaimed entry with a known inode, mtime and size was moved."""
        by_inode = {(s.dev, s.ino): fid for fid, s in self._seen.items() if s.override_id is None}
        for i, obs in enumerate(observed):
            if ids[i] is not None:
                continue
            file_id = by_inode.get((obs.dev, obs.ino))
            seen = self._seen.get(file_id) if file_id else None
            if seen is not None and (seen.is_dir, seen.mtime_ns, seen.size) == (
                obs.is_dir,
                obs.mtime_ns,
                obs.size,
            ):
                claim(i, file_id)

    def _fresh_id(self, relpath: str, claimed: set[str]) -> str:
        candidate, n = path_id(relpath), 0
        while candidate in self._issued or candidate in claimed:
            n += 1
            candidate = path_id(f"{relpath}\x00{n}")
        return candidate
