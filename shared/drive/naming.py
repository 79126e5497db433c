"""Safe, unique, order-independent names for the children of one Drive folder."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import PurePosixPath


def id_tag(file_id: str) -> str:
    """Short stable tag derived from a Drive id (8 hex chars)."""
    return hashlib.sha1(file_id.encode(), usedforsecurity=False).hexdigest()[:8]


def safe_name(name: str) -> str:
    """A Drive name usable as one path segment: no ``/``, never empty, ``.`` or ``..``."""
    cleaned = name.replace("/", "_").replace("\x00", "_").strip()
    return "_" if cleaned in ("", ".", "..") else cleaned


def tagged_name(name: str, file_id: str) -> str:
    """``report.csv`` -> ``report~1a2b3c4d.csv`` (tag before the last extension)."""
    pure = PurePosixPath(name)
    suffix = pure.suffix if pure.stem else ""
    stem = name[: len(name) - len(suffix)] if suffix else name
    return f"{stem}~{id_tag(file_id)}{suffix}"


def unique_names(children: list[tuple[str, str]]) -> dict[str, str]:
    """Map each child id to a unique segment name, given ``(id, drive name)`` pairs.

    Names that collide (case-insensitively, so output also works on macOS/Windows disks) are
    all tagged with their id, so the result never depends on listing order.
    """
    groups: defaultdict[str, list[tuple[str, str]]] = defaultdict(list)
    for file_id, name in children:
        clean = safe_name(name)
        groups[clean.casefold()].append((file_id, clean))
    result: dict[str, str] = {}
    for members in groups.values():
        distinct_ids = {file_id for file_id, _ in members}
        for file_id, clean in members:
            result[file_id] = clean if len(distinct_ids) == 1 else tagged_name(clean, file_id)
    return result
