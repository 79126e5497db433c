"""Fixtures for the Drive client tests: emulator trees on disk and fast-retrying clients."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.drive import DriveClient, RetryPolicy, TokenAuth

FAST_RETRY = RetryPolicy(max_attempts=6, base_delay=0.005, max_delay=0.05)


def write_tree(root: Path, files: dict[str, bytes | str]) -> Path:
    """Create ``files`` (relative path -> content) under ``root``; returns ``root``."""
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            path.write_bytes(content)
    return root


def write_overrides(directory: Path, entries: dict[str, dict[str, Any]]) -> None:
    """Write a ``.drive.json`` metadata override file into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / ".drive.json").write_text(json.dumps({"entries": entries}), encoding="utf-8")


@pytest.fixture
def emulator_api() -> Any:
    """The devstack.drive_emulator module (DriveEmulator, FaultConfig, generate_tree)."""
    module = pytest.importorskip(
        "devstack.drive_emulator", reason="devstack.drive_emulator is not importable"
    )
    return module


@pytest.fixture
def client_for() -> Iterator[Callable[..., DriveClient]]:
    """Factory: a DriveClient for an emulator URL with tiny backoff; closed after the test."""
    made: list[DriveClient] = []

    def make(url: str, **overrides: Any) -> DriveClient:
        options: dict[str, Any] = {"retry": FAST_RETRY, "timeout": (5.0, 10.0)}
        options.update(overrides)
        client = DriveClient(TokenAuth("test-token"), base_url=url, **options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()
