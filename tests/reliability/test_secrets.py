"""Secrets never reach logs, manifests or stored state: API key, service account key and token.

Runs the real CLI against the Drive emulator with JSON logs at DEBUG, forces retries (503s)
and auth failures (401), then greps every log line, error message and stored object.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from devstack.drive_emulator import DriveEmulator, FaultConfig
from shared.cli import main as cli_main
from shared.storage import open_storage
from tests.reliability.helpers import toml_dumps

CANARY_TOKEN = f"ya29.canary-{uuid.uuid4().hex}"


class _TokenHandler(BaseHTTPRequestHandler):
    """A loopback OAuth token endpoint: any signed assertion gets the canary token."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = json.dumps({"access_token": CANARY_TOKEN, "expires_in": 3600}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def token_server() -> Iterator[str]:
    """The token URI of a loopback OAuth server (stopped after the test)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TokenHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/token"
    server.shutdown()
    server.server_close()


def service_account_json(token_uri: str) -> tuple[str, str]:
    """A fresh service-account key file body and the distinctive middle of its private key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "p",
        "private_key_id": "canary-key-id",
        "private_key": pem,
        "client_email": "sync@p.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": token_uri,
    }
    return json.dumps(info), pem.splitlines()[5]


def run_cli(
    config: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    """``drivepipe sync`` with JSON logs at DEBUG; returns the exit code and everything logged.

    Third-party loggers (urllib3, google-auth) are captured at DEBUG too; only the emulator's
    own access log (the server side, not drivepipe) is left out.
    """
    caplog.clear()
    with caplog.at_level(logging.DEBUG), pytest.MonkeyPatch.context() as env:
        env.setenv("DRIVEPIPE_LOG_THIRD_PARTY", "debug")  # they stay at INFO unless asked
        code = cli_main(["--log-level", "DEBUG", "sync", "--config", str(config), "--json"])
    out, err = capfd.readouterr()
    client_side = [
        caplog.handler.format(r) for r in caplog.records if not r.name.startswith("devstack")
    ]
    return code, out + err + "\n".join(client_side)


def stored_text(dest_url: str) -> str:
    """Every stored manifest, state and lock object (the bookkeeping a secret could reach)."""
    dest = open_storage(dest_url)
    return "\n".join(
        dest.read(o.key).decode("utf-8", "replace") for o in dest.list() if o.key.startswith("_")
    )


def write_config(tmp_path: Path, folder_id: str) -> tuple[Path, str]:
    dest_url = str(tmp_path / "dest")
    body = {"source": {"folder_id": folder_id}, "output": {"url": dest_url}}
    path = tmp_path / "drivepipe.toml"
    path.write_text(toml_dumps({"pipelines": {"rel": body}}))
    return path, dest_url


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "drive"
    root.mkdir()
    for n in range(6):
        (root / f"f{n}.csv").write_text(f"id,amount\n{n},1\n")
    (root / "bad.csv").write_text("id,amount\n1,2,3,4\n")  # a failure in the manifest too
    return root


def test_api_key_never_leaks_through_retries_or_auth_failures(
    folder: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    secret = f"AIzaCanary{uuid.uuid4().hex}"
    monkeypatch.setenv("DRIVEPIPE_LOG_FORMAT", "json")
    monkeypatch.delenv("DRIVE_ACCESS_TOKEN", raising=False)
    monkeypatch.setenv("DRIVE_API_KEY", secret)
    faults = FaultConfig(rate=0.3, kinds=("503", "429", "reset"), seed=3, retry_after_s=0.01)
    with DriveEmulator(folder, api_keys={secret}, faults=faults) as emulator:
        monkeypatch.setenv("DRIVE_API_URL", emulator.url)
        config, dest_url = write_config(tmp_path, emulator.root_id)
        code, logged = run_cli(config, caplog, capfd)
        assert code == 1  # bad.csv failed; the rest went through despite the faults
        assert sum(emulator.stats.snapshot()["faults"].values()) > 0
        assert '"severity"' in logged  # JSON lines were captured
        # A wrong key: 400 keyInvalid, surfaced as an auth error, still without the key.
        monkeypatch.setenv("DRIVE_API_KEY", secret[::-1])
        wrong_code, wrong_logged = run_cli(config, caplog, capfd)
    # 400 keyInvalid is a configuration error (exit 2), clearly worded.
    assert wrong_code == 2 and "API key not valid" in wrong_logged
    for text in (logged, wrong_logged, stored_text(dest_url)):
        assert secret not in text
        assert secret[::-1] not in text


def test_service_account_key_and_token_never_leak(
    folder: Path,
    tmp_path: Path,
    token_server: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    sa_json, key_fragment = service_account_json(token_server)
    monkeypatch.setenv("DRIVEPIPE_LOG_FORMAT", "json")
    monkeypatch.delenv("DRIVE_ACCESS_TOKEN", raising=False)
    monkeypatch.delenv("DRIVE_API_KEY", raising=False)
    monkeypatch.setenv("DRIVE_SERVICE_ACCOUNT_JSON", sa_json)
    faults = FaultConfig(rate=0.3, kinds=("503", "reset"), seed=5, retry_after_s=0.01)
    with DriveEmulator(folder, tokens={CANARY_TOKEN}, faults=faults) as emulator:
        monkeypatch.setenv("DRIVE_API_URL", emulator.url)
        config, dest_url = write_config(tmp_path, emulator.root_id)
        code, logged = run_cli(config, caplog, capfd)
        assert code == 1
        assert emulator.stats.snapshot()["statuses"].get(200, 0) > 0  # the token was accepted
    with DriveEmulator(folder, tokens={"some-other-token"}) as refusing:
        monkeypatch.setenv("DRIVE_API_URL", refusing.url)
        (tmp_path / "again").mkdir()
        config, _ = write_config(tmp_path / "again", refusing.root_id)
        refused_code, refused_logged = run_cli(config, caplog, capfd)
    assert refused_code == 2
    for text in (logged, refused_logged, stored_text(dest_url)):
        assert CANARY_TOKEN not in text
        assert key_fragment not in text
        assert "BEGIN PRIVATE KEY" not in text


def test_a_wrong_api_key_is_a_configuration_error(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DRIVE_ACCESS_TOKEN", raising=False)
    monkeypatch.setenv("DRIVE_API_KEY", "AIzaWrongKey")
    with DriveEmulator(folder, api_keys={"AIzaRightKey"}) as emulator:
        monkeypatch.setenv("DRIVE_API_URL", emulator.url)
        config, _ = write_config(tmp_path, emulator.root_id)
        assert cli_main(["sync", "--config", str(config)]) == 2
