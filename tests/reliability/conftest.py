"""Fixtures for the reliability campaign: a Drive emulator folder, a deployed config, helpers.

Servers are real and on 127.0.0.1: the Drive emulator (in process, threaded), moto_server and
gcp-storage-emulator (subprocesses, from the root conftest). Every fixture stops what it starts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.drive_emulator import DriveEmulator, FaultConfig
from shared.config import Pipeline, load_config_from_env, parse_config
from tests.reliability.helpers import toml_dumps


@pytest.fixture
def drive_root(tmp_path: Path) -> Path:
    """An empty folder the Drive emulator serves; tests write their files into it."""
    root = tmp_path / "drive"
    root.mkdir()
    return root


@pytest.fixture
def emulator(drive_root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DriveEmulator]:
    """A Drive emulator over ``drive_root``; ``DRIVE_API_URL``/token point the client at it."""
    with DriveEmulator(drive_root, faults=FaultConfig(seed=7)) as emu:
        monkeypatch.setenv("DRIVE_API_URL", emu.url)
        monkeypatch.setenv("DRIVE_ACCESS_TOKEN", "reliability-token")
        monkeypatch.delenv("DRIVE_API_KEY", raising=False)
        monkeypatch.delenv("DRIVE_SERVICE_ACCOUNT_JSON", raising=False)
        yield emu


def make_pipeline(url: str, folder_id: str | None = None, **body: Any) -> Pipeline:
    """A pipeline named ``rel`` writing to ``url`` (extra keys go into the pipeline table)."""
    spec: dict[str, Any] = {"output": {"url": url}, **body}
    if folder_id:
        spec.setdefault("source", {})["folder_id"] = folder_id
    return parse_config({"pipelines": {"rel": spec}}).pipelines["rel"]


Deploy = Callable[..., Path]


@pytest.fixture
def deploy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Deploy]:
    """``deploy(config_dict)`` writes the TOML, points ``DRIVEPIPE_CONFIG`` at it, reloads."""

    def write(data: dict[str, Any]) -> Path:
        path = tmp_path / "drivepipe.toml"
        path.write_text(toml_dumps(data), encoding="utf-8")
        monkeypatch.setenv("DRIVEPIPE_CONFIG", str(path))
        load_config_from_env.cache_clear()
        return path

    yield write
    load_config_from_env.cache_clear()
