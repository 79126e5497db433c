"""Fixtures for the Chalice app: a fresh import of chalice_app/app.py against the local stack.

The app reads its stage settings (auth mode, input bucket) at import, as Lambda does on a cold
start, so every test imports its own copy after setting the environment. S3 is the session's
moto_server; Drive is the emulator serving a small folder written per test.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from chalice.test import Client

from devstack.drive_emulator.emulator import DriveEmulator
from devstack.servers import MotoServer
from shared.config import load_config_from_env

REPO_ROOT = Path(__file__).resolve().parents[2]
APP_PATH = REPO_ROOT / "chalice_app" / "app.py"
SHIPPED_CONFIG = REPO_ROOT / "chalice_app" / "chalicelib" / "drivepipe.toml"
SALES_CSV = "Region Name,Units\nnorth,3\nsouth,5\neast,0\n"
_imports = itertools.count()
DEADLINE = 60.0

AppLoader = Callable[..., ModuleType]


def import_app(**env: str | None) -> ModuleType:
    """Import chalice_app/app.py as a new module (a cold start); env must already be applied."""
    load_config_from_env.cache_clear()
    name = f"drivepipe_chalice_app_{next(_imports)}"
    spec = importlib.util.spec_from_file_location(name, APP_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


@pytest.fixture
def load_app(monkeypatch: pytest.MonkeyPatch) -> Iterator[AppLoader]:
    """``load_app(VAR=value, OTHER=None)`` sets/unsets env vars, then imports the app afresh."""

    def load(**env: str | None) -> ModuleType:
        for name, value in env.items():
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        return import_app()

    yield load
    load_config_from_env.cache_clear()


@pytest.fixture
def app_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Just enough environment to import the app (dev-stage-like, IAM auth); no servers."""
    env = {
        "DRIVE_FOLDER_ID": "folder0",
        "DRIVEPIPE_INPUT_BUCKET": "drivepipe-in-test",
        "DRIVEPIPE_OUTPUT_BUCKET": "drivepipe-out-test",
        "DRIVEPIPE_CONFIG": str(SHIPPED_CONFIG),
        "DRIVEPIPE_HTTP_AUTH": "iam",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DRIVEPIPE_PUBLIC", raising=False)
    return env


@dataclass
class Stack:
    """The local stack one test runs against."""

    moto: MotoServer
    drive: DriveEmulator
    drive_root: Path
    input_bucket: str
    output_bucket: str

    def s3(self) -> Any:
        """A boto3 S3 client for moto_server."""
        return self.moto.client("s3")

    def output_keys(self, prefix: str = "sales/") -> list[str]:
        """Every key in the output bucket under ``prefix``."""
        pages = (
            self.s3()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=self.output_bucket, Prefix=prefix)
        )
        return [obj["Key"] for page in pages for obj in page.get("Contents", [])]

    def dev_options(self) -> list[str]:
        """``drivepipe dev aws`` options for this stack's servers and buckets (fast polling)."""
        return [
            "--s3-endpoint",
            self.moto.url,
            "--drive-url",
            self.drive.url,
            "--drive-folder-id",
            self.drive.root_id,
            "--input-bucket",
            self.input_bucket,
            "--output-bucket",
            self.output_bucket,
            "--poll-interval",
            "0.2",
        ]

    def data_outputs(self) -> list[str]:
        """Output keys that are data, not bookkeeping (``_runs/``, ``_state/``...)."""
        return [k for k in self.output_keys() if "/_" not in k]


@pytest.fixture
def stack(
    moto_server: MotoServer,
    s3_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Stack]:
    """moto_server buckets + a Drive emulator on a one-CSV folder, env pointed at both."""
    suffix = tmp_path.name.lower().replace("_", "-")[-20:].strip("-")
    input_bucket = moto_server.create_bucket(f"in-{suffix}")
    output_bucket = moto_server.create_bucket(f"out-{suffix}")
    drive_root = tmp_path / "drive"
    drive_root.mkdir()
    (drive_root / "q1.csv").write_text(SALES_CSV)
    with DriveEmulator(drive_root) as drive:
        env = {
            "DRIVE_API_URL": drive.url,
            "DRIVE_ACCESS_TOKEN": "local-test-token",
            "DRIVE_FOLDER_ID": drive.root_id,
            "DRIVEPIPE_INPUT_BUCKET": input_bucket,
            "DRIVEPIPE_OUTPUT_BUCKET": output_bucket,
            "DRIVEPIPE_CONFIG": str(SHIPPED_CONFIG),
            "DRIVEPIPE_HTTP_AUTH": "iam",
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("DRIVEPIPE_PUBLIC", raising=False)
        yield Stack(moto_server, drive, drive_root, input_bucket, output_bucket)


@pytest.fixture
def app_module(stack: Stack, load_app: AppLoader) -> ModuleType:
    """The app imported against ``stack`` (IAM auth, as the dev stage)."""
    return load_app()


@pytest.fixture
def client(app_module: ModuleType, tmp_path: Path) -> Client:
    """chalice.test.Client for the app; no project dir, so the test's env is what the app sees."""
    return Client(app_module.app, project_dir=str(tmp_path))


def wait_for(check: Callable[[], object], what: str, timeout: float = DEADLINE) -> None:
    """Poll ``check`` until it is truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


@dataclass
class DevCommand:
    """A running ``drivepipe dev aws`` and the lines it printed so far."""

    process: subprocess.Popen[str]
    lines: queue.Queue[str] = field(default_factory=queue.Queue)
    output: list[str] = field(default_factory=list)

    def next_line_with(self, text: str, timeout: float = DEADLINE) -> str:
        """The next printed line containing ``text``; fails if the command exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                assert self.process.poll() is None, "\n".join(self.output)
                continue
            self.output.append(line)
            if text in line:
                return line
        pytest.fail(f"no line with {text!r} in:\n" + "\n".join(self.output))


def _read_lines(stream: Iterator[str], into: queue.Queue[str]) -> None:
    for line in stream:
        into.put(line.rstrip("\n"))


@contextlib.contextmanager
def dev_command(*command: str) -> Iterator[DevCommand]:
    """Run ``command`` (a dev AWS command line) from the repo; SIGTERM it after, expecting 0."""
    process = subprocess.Popen(
        [sys.executable, *command],
        cwd=REPO_ROOT,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    dev = DevCommand(process)
    assert process.stdout is not None
    threading.Thread(target=_read_lines, args=(process.stdout, dev.lines), daemon=True).start()
    try:
        yield dev
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode == 0, "\n".join(dev.output)
