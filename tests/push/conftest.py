"""Fixtures for Drive push notifications: a Drive folder served by the emulator (with an
injectable clock), a push pipeline file, a local secret store, and replays of the emulator's
real notifications into the webhook."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from devstack.drive_emulator import DriveEmulator
from shared.config import load_config_from_env
from shared.run import push_queue
from shared.run.channel_secrets import _cache
from shared.settings import _load
from shared.triggers import service
from tests.drive_emulator.webhook import Recorder

NOW = 1_900_000_000.0  # the emulator's and the channels' clock, moved by hand
Q1 = "order_id,units\n1,3\n2,5\n"


class Clock:
    """A wall clock the tests move."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def pipeline_toml(output_url: str, folder_id: str, *, name: str = "sales") -> str:
    """A pipeline file with one push pipeline."""
    return textwrap.dedent(
        f"""
        [pipelines.{name}]
        scheduled = true
        push = true
        source = {{ folder_id = "{folder_id}", changes_feed = true }}
        output = {{ url = "{output_url}", format = "csv" }}
        """
    )


@dataclass
class PushSetup:
    """A push pipeline over an emulated folder, its destination and the secret store."""

    root: Path
    drive: DriveEmulator
    clock: Clock
    config: Path
    output: Path
    secrets: Path
    handed_off: list[push_queue.PushMessage] = field(default_factory=list)

    def write(self, relpath: str, text: str, stamp: int | None = None) -> Path:
        import os

        path = self.root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if stamp is not None:
            os.utime(path, (stamp, stamp))
        return path

    @property
    def pipeline(self) -> Any:
        return service.config().pipelines["sales"]


@pytest.fixture
def clean_settings() -> Iterator[None]:
    """Settings, the config and cached tokens are re-read per test."""
    _load.cache_clear()
    load_config_from_env.cache_clear()
    _cache.clear()
    yield
    _load.cache_clear()
    load_config_from_env.cache_clear()
    _cache.clear()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    """A webhook stand-in that records what the emulator delivers."""
    with Recorder() as hook:
        yield hook


@pytest.fixture
def push_setup(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    recorder: Recorder,
    clean_settings: None,
) -> Iterator[PushSetup]:
    """Emulator (no background polling; tests call poll_changes), local destination, a
    ``dir:`` secret store, notifications delivered to ``recorder``; hand-offs collected."""
    root = tmp_path / "drive"
    (root / "sales").mkdir(parents=True)
    (root / "sales" / "q1.csv").write_text(Q1)
    clock = Clock()
    with DriveEmulator(root, clock=clock, watch_poll_interval=None) as drive:
        output, secrets = tmp_path / "lake", tmp_path / "secrets"
        config = tmp_path / "drivepipe.toml"
        config.write_text(pipeline_toml(str(output), drive.root_id))
        env = {
            "DRIVE_API_URL": drive.url,
            "DRIVE_ACCESS_TOKEN": "local-test-token",
            "DRIVEPIPE_CONFIG": str(config),
            "DRIVEPIPE_CHANNEL_SECRETS": f"dir:{secrets}",
            "DRIVEPIPE_PUSH_ADDRESS": recorder.url,
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        for name in ("DRIVEPIPE_PUSH_QUEUE", "DRIVEPIPE_PUSH_TOPIC"):
            monkeypatch.delenv(name, raising=False)
        setup = PushSetup(root, drive, clock, config, output, secrets)

        def collect(message: push_queue.PushMessage) -> bool:
            setup.handed_off.append(message)
            return True

        monkeypatch.setattr(push_queue, "hand_off", collect)
        yield setup


Replay = Callable[..., Any]


def headers_of(received: Any, **changes: str) -> dict[str, str]:
    """The X-Goog headers of one recorded notification, with ``changes`` applied."""
    headers = {k: v for k, v in received.headers.items() if k.lower().startswith("x-goog")}
    headers.update(changes)
    return headers
