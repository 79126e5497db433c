"""Launchers for the local cloud stand-ins: ``moto_server`` (S3) and ``gcp-storage-emulator`` (GCS).

The GCS emulator runs through ``devstack.gcs_emulator``, which adds GCS's object preconditions.

Each runs as a real subprocess on 127.0.0.1 in its own process group, is considered started only
once it answers HTTP, and is stopped with terminate -> wait -> kill of the whole group.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any, Self

HOST = "127.0.0.1"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0
LOG_TAIL_BYTES = 4000


class ServerStartError(RuntimeError):
    """A local server did not come up; the message carries the tail of its log."""


def free_port(host: str = HOST) -> int:
    """Ask the OS for a currently free TCP port on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(host: str, port: int, timeout: float = START_TIMEOUT) -> None:
    """Block until a TCP connect to ``host:port`` succeeds; ``TimeoutError`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s") from None
            time.sleep(0.05)


def _answers_http(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0):
            return True
    except urllib.error.HTTPError:
        return True  # any HTTP status means the server is up
    except (OSError, ValueError):
        return False


def venv_executable(name: str) -> str:
    """Path of a console script from the running interpreter's venv (else from PATH)."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise ServerStartError(f"{name!r} not found next to {sys.executable} or on PATH")
    return found


class LocalServer:
    """A subprocess serving HTTP on 127.0.0.1:port; subclasses provide ``command()``."""

    name = "server"
    start_attempts = 3  # a port picked by free_port() can be taken before the child binds it

    def __init__(self, port: int | None = None, *, start_timeout: float = START_TIMEOUT) -> None:
        self._requested_port = port
        self.port = port or 0
        self.start_timeout = start_timeout
        self.startup_seconds: float | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        """True while the subprocess is alive."""
        return self._process is not None and self._process.poll() is None

    def command(self) -> list[str]:
        """The argv that serves on ``self.port``."""
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        """Environment variables that point clients at this server."""
        raise NotImplementedError

    def start(self) -> Self:
        """Start the server and wait until it answers HTTP; raise ``ServerStartError`` if not."""
        if self.running:
            return self
        attempts = 1 if self._requested_port else self.start_attempts
        for attempt in range(1, attempts + 1):
            self.port = self._requested_port or free_port()
            try:
                self._spawn_and_wait()
                return self
            except ServerStartError:
                if attempt == attempts:
                    raise
        return self  # pragma: no cover - loop always returns or raises

    def _spawn_and_wait(self) -> None:
        fd, log_name = tempfile.mkstemp(prefix=f"drivepipe-{self.name}-", suffix=".log")
        self._log_path = Path(log_name)
        began = time.monotonic()
        with os.fdopen(fd, "wb") as log:
            self._process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop() kills the whole tree
            )
        atexit.register(self.stop)
        deadline = began + self.start_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                tail = self.log_tail()
                code = self._process.returncode
                self._cleanup()
                raise ServerStartError(f"{self.name} exited with code {code}:\n{tail}")
            if _answers_http(self.url + "/"):
                self.startup_seconds = time.monotonic() - began
                return
            time.sleep(0.05)
        tail = self.log_tail()
        self.stop()
        raise ServerStartError(
            f"{self.name} did not answer on {self.url} within {self.start_timeout}s:\n{tail}"
        )

    def log_tail(self, max_bytes: int = LOG_TAIL_BYTES) -> str:
        """Last ``max_bytes`` of the server's combined stdout/stderr."""
        if self._log_path is None or not self._log_path.exists():
            return ""
        with self._log_path.open("rb") as log:
            log.seek(max(0, self._log_path.stat().st_size - max_bytes))
            return log.read().decode("utf-8", "replace")

    def stop(self) -> None:
        """Terminate the process group, wait, then kill it if needed. Safe to call twice."""
        process = self._process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=STOP_TIMEOUT)
        self._cleanup()

    def _cleanup(self) -> None:
        self._process = None
        atexit.unregister(self.stop)
        if self._log_path is not None:
            with contextlib.suppress(OSError):
                self._log_path.unlink()
            self._log_path = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"{type(self).__name__}({self.url}, {state})"


class MotoServer(LocalServer):
    """``moto_server`` (S3, SQS, ...) on 127.0.0.1 with dummy credentials."""

    name = "moto_server"

    def __init__(self, port: int | None = None, *, start_timeout: float = START_TIMEOUT) -> None:
        super().__init__(port, start_timeout=start_timeout)
        self._clients: dict[str, Any] = {}

    def command(self) -> list[str]:
        """``moto_server -H 127.0.0.1 -p PORT``."""
        return [venv_executable("moto_server"), "-H", HOST, "-p", str(self.port)]

    def env(self) -> dict[str, str]:
        """AWS_ENDPOINT_URL plus dummy credentials and region."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def client(self, service: str = "s3") -> Any:
        """A boto3 client bound to this server (cached per service; clients are thread-safe)."""
        cache_key = f"{service} {self.url}"
        if cache_key not in self._clients:
            import boto3

            self._clients[cache_key] = boto3.session.Session().client(
                service,
                endpoint_url=self.url,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
                region_name="us-east-1",
            )
        return self._clients[cache_key]

    def create_bucket(self, name: str) -> str:
        """Create an S3 bucket; returns its name."""
        self.client("s3").create_bucket(Bucket=name)
        return name


class GcsEmulator(LocalServer):
    """``gcp-storage-emulator`` in memory on 127.0.0.1 (anonymous access).

    Run through ``devstack.gcs_emulator``, which makes it enforce ``ifGenerationMatch`` and the
    other object preconditions as real GCS does (upstream ignores them).
    """

    name = "gcp-storage-emulator"
    project = "local"

    def command(self) -> list[str]:
        """``python -m devstack.gcs_emulator start --host 127.0.0.1 --port PORT --in-memory``."""
        return [
            sys.executable,
            "-m",
            "devstack.gcs_emulator",
            "start",
            "--host",
            HOST,
            "--port",
            str(self.port),
            "--in-memory",
        ]

    def env(self) -> dict[str, str]:
        """STORAGE_EMULATOR_HOST and GOOGLE_CLOUD_PROJECT."""
        return {"STORAGE_EMULATOR_HOST": self.url, "GOOGLE_CLOUD_PROJECT": self.project}

    def client(self) -> Any:
        """A google-cloud-storage client bound to this emulator (no env vars needed)."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(
            project=self.project,
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": self.url},
        )

    def create_bucket(self, name: str) -> str:
        """Create a GCS bucket; returns its name."""
        self.client().create_bucket(name)
        return name
