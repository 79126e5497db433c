"""Fixtures for tables: a Drive folder that drifts, synced stage by stage into one table."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from devstack.drive_emulator import DriveEmulator
from shared.config import Pipeline, parse_config
from shared.run.manifest import RunManifest
from shared.run.sync import SyncRequest, run_sync
from shared.run.tables.store import SchemaDoc, SchemaStore
from shared.storage import layout, open_storage

# Staged drift: whole-number prices, then fractional ones and a gap, then an extra column,
# then an input that breaks the contract (units is declared int64).
STAGES: list[dict[str, str]] = [
    {"2024/q1.csv": "region,product,price,units\nEU,a,3,1\nUS,b,4,2\n"},
    {"2024/q2.csv": "region,product,price,units\nEU,c,2.75,1\nUS,d,,3\n"},
    {"2025/q3.csv": "region,product,price,units,discount\nEU,e,5,2,0.5\n"},
    {"bad/breaker.csv": "region,product,price,units\nEU,f,1.0,lots\n"},
]
ROWS, PRICE, UNITS, DISCOUNT = 5, 14.75, 9, 0.5


class Folder:
    """A Drive folder served by the emulator; files are added stage by stage."""

    def __init__(self, root: Path, emulator: DriveEmulator) -> None:
        self.root = root
        self.emulator = emulator

    @property
    def folder_id(self) -> str:
        return self.emulator.root_id

    def write(self, relpath: str, text: str) -> None:
        path = self.root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Folder]:
    root = tmp_path / "drive"
    root.mkdir()
    with DriveEmulator(root) as emulator:
        monkeypatch.setenv("DRIVE_API_URL", emulator.url)
        monkeypatch.setenv("DRIVE_ACCESS_TOKEN", "test-token")
        monkeypatch.delenv("DRIVE_API_KEY", raising=False)
        yield Folder(root, emulator)


def pipeline(url: str, **body: Any) -> Pipeline:
    """The ``sales`` pipeline: CSV → Parquet table, partitioned by region, units declared."""
    output = {"url": url, "partition_by": ["region"], **body.pop("output", {})}
    schema = {"columns": {"units": "int64"}, **body.pop("schema", {})}
    config = {"output": output, "schema": schema, **body}
    return parse_config({"pipelines": {"sales": config}}).pipelines["sales"]


def sync(p: Pipeline, folder: Folder, **kwargs: Any) -> RunManifest:
    return run_sync(SyncRequest(pipeline=p, folder_id=folder.folder_id, **kwargs))


def schema_doc(url: str, name: str = "sales") -> SchemaDoc:
    return SchemaStore(open_storage(url), name).read()


def table_files(url: str, table: str) -> dict[str, Any]:
    """Every Parquet file of ``table``: key → its Arrow schema (no metadata)."""
    store = open_storage(url)
    return {
        info.key: pq.read_schema(io.BytesIO(store.read(info.key))).remove_metadata()
        for info in store.list(layout.table_dir(table))
        if info.key.endswith(".parquet")
    }
