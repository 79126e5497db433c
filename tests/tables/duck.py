"""DuckDB over a table's location, on any of our three backends.

A local table is read from its directory. For S3 (moto server) and GCS (the emulator), DuckDB
reads through an fsspec filesystem over our storage contract, so each file DuckDB opens is a
real GET through boto3 or google-cloud-storage; DuckDB's own httpfs extension is not shipped in
its wheel (it downloads it at run time) and could not reach the GCS emulator anyway.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
from fsspec.spec import AbstractFileSystem

from shared.storage import Storage, layout, open_storage


class StorageFileSystem(AbstractFileSystem):  # type: ignore[misc]
    """A read-only fsspec filesystem, ``drivepipe://<key>``, over one storage root."""

    protocol = "drivepipe"
    cachable = False

    def __init__(self, storage: Storage, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.storage = storage

    def _key(self, path: str) -> str:
        return self._strip_protocol(path).strip("/")

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        prefix = self._key(path)
        prefix = f"{prefix}/" if prefix else ""
        entries: dict[str, dict[str, Any]] = {}
        for info in self.storage.list(prefix):
            rest = info.key[len(prefix) :]
            head, slash, _ = rest.partition("/")
            name = f"{prefix}{head}"
            if slash:
                entries.setdefault(name, {"name": name, "size": 0, "type": "directory"})
            else:
                entries[name] = {"name": name, "size": info.size, "type": "file"}
        listed = sorted(entries.values(), key=lambda e: e["name"])
        return listed if detail else [e["name"] for e in listed]

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        key = self._key(path)
        found = self.storage.stat(key) if key else None
        if found is not None:
            return {"name": key, "size": found.size, "type": "file"}
        return {"name": key, "size": 0, "type": "directory"}

    def modified(self, path: str) -> datetime:
        found = self.storage.stat(self._key(path))
        return found.updated if found and found.updated else datetime.fromtimestamp(0, UTC)

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> io.BytesIO:
        return io.BytesIO(self.storage.read(self._key(path)))


def connect(url: str) -> tuple[duckdb.DuckDBPyConnection, str]:
    """A connection that reads ``url``'s objects, and the path prefix to query them by."""
    con = duckdb.connect()
    if "://" not in url or url.startswith("file://"):
        return con, str(Path(url.removeprefix("file://"))) + "/"
    con.register_filesystem(StorageFileSystem(open_storage(url)))
    return con, "drivepipe://"


def table_glob(url: str, table: str) -> tuple[duckdb.DuckDBPyConnection, str]:
    """A connection and the glob of every Parquet file under ``table``'s location."""
    con, root = connect(url)
    return con, f"{root}{layout.table_dir(table)}**/*.parquet"


def query(url: str, table: str, sql: str) -> list[tuple[Any, ...]]:
    """Run ``sql``, where ``{t}`` is ONE ``read_parquet`` of the whole table (no union_by_name)."""
    con, glob = table_glob(url, table)
    return con.sql(sql.format(t=f"read_parquet('{glob}')")).fetchall()
