"""Fixtures for pipeline tests: a small Drive tree served by the real emulator on 127.0.0.1."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from devstack.drive_emulator import DriveEmulator

SALES_Q1 = "order_id,region,units,unit_price\n1,EU,3,2.5\n2,US,0,9.0\n3,EU,5,1.0\n"
SALES_Q2 = "order_id,region,units,unit_price\n4,US,2,4.0\n5,APAC,1,10.0\n"
# Semicolons, latin-1 and accents: the reader must sniff both.
VENTES = "order_id;region;units;unit_price\n6;EU;4;3,5\n7;EU;1;2\n".replace(",", ".").encode(
    "latin-1"
)


@dataclass
class DriveTree:
    """A Drive emulator over a temporary folder, with the env that points the client at it."""

    root: Path
    emulator: DriveEmulator

    @property
    def folder_id(self) -> str:
        return self.emulator.root_id

    def write(self, relpath: str, data: bytes | str) -> None:
        path = self.root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)


def xlsx_bytes(sheets: dict[str, pd.DataFrame]) -> bytes:
    buffer = io.BytesIO()
    with pd.ExcelWriter(buffer, engine="openpyxl") as writer:
        for name, frame in sheets.items():
            frame.to_excel(writer, sheet_name=name, index=False)
    return buffer.getvalue()


def build_sample_tree(root: Path) -> None:
    """Nested CSVs, a semicolon/latin-1 CSV, a two-sheet workbook, a native sheet and doc,
    a malformed CSV and a trashed file."""
    (root / "sales" / "2024").mkdir(parents=True)
    (root / "europe").mkdir()
    (root / "broken").mkdir()
    (root / "sales" / "2024" / "q1.csv").write_text(SALES_Q1)
    (root / "sales" / "2024" / "q2.csv").write_text(SALES_Q2)
    (root / "europe" / "ventes_été.csv").write_bytes(VENTES)
    (root / "book.xlsx").write_bytes(
        xlsx_bytes(
            {
                "North": pd.DataFrame(
                    {"order_id": [8], "region": ["EU"], "units": [2], "unit_price": [1.5]}
                ),
                "South": pd.DataFrame(
                    {"order_id": [9], "region": ["US"], "units": [7], "unit_price": [2.0]}
                ),
            }
        )
    )
    (root / "targets.gsheet.csv").write_text("region,target\nEU,100\nUS,200\n")
    (root / "notes.gdoc.txt").write_text("meeting notes")
    # ragged rows: the second data row has too many fields
    (root / "broken" / "bad.csv").write_text("a,b\n1,2\n3,4,5,6\n")
    (root / "old.csv").write_text("x\n1\n")
    (root / ".drive.json").write_text(json.dumps({"entries": {"old.csv": {"trashed": True}}}))


@pytest.fixture
def drive_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DriveTree]:
    """The sample tree served by a Drive emulator; ``DRIVE_API_URL`` points at it."""
    root = tmp_path / "drive"
    root.mkdir()
    build_sample_tree(root)
    with DriveEmulator(root) as emulator:
        monkeypatch.setenv("DRIVE_API_URL", emulator.url)
        monkeypatch.setenv("DRIVE_ACCESS_TOKEN", "test-token")
        monkeypatch.delenv("DRIVE_API_KEY", raising=False)
        yield DriveTree(root=root, emulator=emulator)


@pytest.fixture
def drive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DriveEmulator]:
    """The mirror scenario's Drive tree (tests/core/mirror_scenario.py), served over HTTP."""
    from tests.core import mirror_scenario as scenario

    root = tmp_path / "drive"
    scenario.build(root)
    with DriveEmulator(root) as emulator:
        monkeypatch.setenv("DRIVE_API_URL", emulator.url)
        monkeypatch.setenv("DRIVE_ACCESS_TOKEN", "test-token")
        monkeypatch.delenv("DRIVE_API_KEY", raising=False)
        yield emulator
