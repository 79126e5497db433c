"""Which walked files to keep: path globs (with ``**``), MIME types / formats, modified-since."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import PurePosixPath

from shared.drive.models import CSV_MIME, SHEET_MIME, XLSX_MIME

# Short format names accepted in ``mime_types`` -> (MIME types, file extensions).
FORMAT_ALIASES: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "csv": (frozenset({CSV_MIME, "application/csv"}), frozenset({".csv"})),
    "tsv": (frozenset({"text/tab-separated-values"}), frozenset({".tsv"})),
    "xlsx": (frozenset({XLSX_MIME}), frozenset({".xlsx"})),
    "xls": (frozenset({"application/vnd.ms-excel"}), frozenset({".xls"})),
    "json": (frozenset({"application/json"}), frozenset({".json"})),
    "jsonl": (
        frozenset({"application/x-ndjson", "application/jsonl", "application/jsonlines"}),
        frozenset({".jsonl", ".ndjson"}),
    ),
    "parquet": (
        frozenset({"application/vnd.apache.parquet", "application/x-parquet"}),
        frozenset({".parquet"}),
    ),
    "gsheet": (frozenset({SHEET_MIME}), frozenset()),
}


@lru_cache(maxsize=256)
def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """Compile a path glob: ``*``/``?``/``[..]`` stay inside one segment, ``**`` crosses ``/``.

    ``**/`` also matches zero directories, so ``**/*.csv`` matches ``a.csv`` and ``x/y/a.csv``.
    The whole relative path must match (like ``PurePosixPath.full_match`` in Python 3.13).
    """
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if i < n and pattern[i] == "/":
                out.append("(?:.*/)?")
                i += 1
            else:
                out.append(".*")
        elif ch == "*":
            out.append("[^/]*")
            i += 1
        elif ch == "?":
            out.append("[^/]")
            i += 1
        elif ch == "[":
            end = pattern.find("]", i + 2 if pattern[i + 1 : i + 2] in ("!", "^") else i + 1)
            if end == -1:
                out.append(re.escape(ch))
                i += 1
                continue
            body = pattern[i + 1 : end]
            negate = body[:1] in ("!", "^")
            body = body[1:] if negate else body
            body = body.replace("\\", "\\\\")
            out.append(f"[^/{body}]" if negate else f"[{body}]")
            i = end + 1
        else:
            out.append(re.escape(ch))
            i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)


def glob_match(path: str, pattern: str) -> bool:
    """True when the posix ``path`` matches ``pattern`` in full (see glob_to_regex)."""
    return glob_to_regex(pattern.lstrip("/")).match(path) is not None


def _to_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def drive_timestamp(value: datetime) -> str:
    """RFC 3339 UTC form Drive's ``q`` accepts (naive datetimes are taken as UTC)."""
    return _to_utc(value).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_drive_time(value: str) -> datetime:
    """Parse Drive's ``modifiedTime`` (``2024-01-02T03:04:05.678Z``)."""
    return _to_utc(datetime.fromisoformat(value.replace("Z", "+00:00")))


@dataclass(frozen=True)
class FileFilter:
    """Include/exclude globs, wanted MIME types or format names, and a modified-since bound."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    mime_types: frozenset[str] | None = None  # full MIME types
    extensions: frozenset[str] = frozenset()  # from format aliases, lower-case with dot
    modified_since: datetime | None = None

    @classmethod
    def build(
        cls,
        include: Iterable[str] = (),
        exclude: Iterable[str] = (),
        mime_types: Iterable[str] | None = None,
        modified_since: datetime | None = None,
    ) -> FileFilter:
        """Normalise user input; ``mime_types`` mixes full types and names like csv/xlsx/gsheet."""
        if isinstance(include, str) or isinstance(exclude, str) or isinstance(mime_types, str):
            raise TypeError("include, exclude and mime_types take a list of strings, not a str")
        mimes: set[str] | None = None
        extensions: set[str] = set()
        if mime_types is not None:
            mimes = set()
            for item in mime_types:
                alias = FORMAT_ALIASES.get(item.lower().lstrip("."))
                if alias:
                    mimes |= alias[0]
                    extensions |= alias[1]
                elif "/" in item:
                    mimes.add(item)
                else:
                    known = ", ".join(sorted(FORMAT_ALIASES))
                    raise ValueError(f"unknown MIME type or format {item!r}; use one of {known}")
        return cls(
            include=tuple(include),
            exclude=tuple(exclude),
            mime_types=frozenset(mimes) if mimes is not None else None,
            extensions=frozenset(extensions),
            modified_since=_to_utc(modified_since) if modified_since else None,
        )

    def accepts(self, path: str, mime_type: str, modified_time: str) -> bool:
        """True when a file at ``path`` passes every filter."""
        if self.include and not any(glob_match(path, p) for p in self.include):
            return False
        if any(glob_match(path, p) for p in self.exclude):
            return False
        if self.mime_types is not None and mime_type not in self.mime_types:
            suffix = PurePosixPath(path).suffix.lower()
            if not suffix or suffix not in self.extensions:
                return False
        if self.modified_since is not None and modified_time:
            return parse_drive_time(modified_time) > self.modified_since
        return True
