"""Fixtures: a rich on-disk Drive tree and emulators serving it on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from devstack.drive_emulator import DriveEmulator
from tests.drive_emulator.helpers import build_tree


@pytest.fixture(scope="module")
def tree_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only-by-convention tree shared by a test module."""
    return build_tree(tmp_path_factory.mktemp("drive") / "root")


@pytest.fixture(scope="module")
def emu(tree_root: Path) -> Iterator[DriveEmulator]:
    """An emulator over `tree_root`; tests must not change its faults or files."""
    with DriveEmulator(tree_root, export_limit_bytes=1_000_000) as emulator:
        yield emulator


@pytest.fixture
def fresh_emu(tmp_path: Path) -> Iterator[DriveEmulator]:
    """A private emulator over a private tree, for tests that change files or faults."""
    with DriveEmulator(build_tree(tmp_path / "root")) as emulator:
        yield emulator


@pytest.fixture
def http() -> Iterator[requests.Session]:
    """A pooled session, like the real client uses."""
    with requests.Session() as session:
        yield session
