"""Cross-area fixtures: real local servers (moto_server, gcp-storage-emulator) and storage roots.

Servers are session-scoped and started only when a test asks for them; under pytest-xdist every
worker starts its own. Buckets are fresh per test and the env vars that point the real SDK
clients at the servers are applied with ``monkeypatch`` for that test only.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.servers import GcsEmulator, MotoServer
from shared.log import THIRD_PARTY_LOGGERS

# Real credentials or endpoints in the developer's shell must never leak into tests.
_CLOUD_ENV_TO_CLEAR = (
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL_S3",
    "AWS_REGION",
    "GOOGLE_APPLICATION_CREDENTIALS",
)

STORAGE_BACKENDS = ("local", "s3", "gcs")


@pytest.fixture(autouse=True)
def _third_party_log_levels() -> Iterator[None]:
    """``shared.log.configure`` caps botocore, urllib3, ...: give the next test them as found."""
    levels = {name: logging.getLogger(name).level for name in THIRD_PARTY_LOGGERS}
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def unique_bucket_name(prefix: str = "dp") -> str:
    """A valid, unique S3/GCS bucket name."""
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """A ``moto_server`` subprocess on 127.0.0.1, shared by the session (or xdist worker)."""
    with MotoServer() as server:
        yield server


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[GcsEmulator]:
    """A ``gcp-storage-emulator`` subprocess on 127.0.0.1, in memory, shared by the session."""
    with GcsEmulator() as server:
        yield server


def _point_at(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Clear real cloud credentials/endpoints, then apply ``env``, for this test only."""
    for name in _CLOUD_ENV_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def s3_env(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point boto3 at the session's moto_server for this test; returns the env applied."""
    return _point_at(moto_server.env(), monkeypatch)


@pytest.fixture
def gcs_env(gcs_emulator: GcsEmulator, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point google-cloud-storage at the session's emulator for this test."""
    return _point_at(gcs_emulator.env(), monkeypatch)


@pytest.fixture
def s3_bucket(moto_server: MotoServer, s3_env: dict[str, str]) -> str:
    """A fresh, empty S3 bucket on moto_server (env applied); returns its name."""
    return moto_server.create_bucket(unique_bucket_name("s3"))


@pytest.fixture
def gcs_bucket(gcs_emulator: GcsEmulator, gcs_env: dict[str, str]) -> str:
    """A fresh, empty GCS bucket on the emulator (env applied); returns its name."""
    return gcs_emulator.create_bucket(unique_bucket_name("gs"))


@pytest.fixture(params=STORAGE_BACKENDS)
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty storage root URL per test, once per backend: local dir, s3://, gs://."""
    backend: str = request.param
    if backend == "s3":
        return f"s3://{request.getfixturevalue('s3_bucket')}/root"
    if backend == "gcs":
        return f"gs://{request.getfixturevalue('gcs_bucket')}/root"
    return str(tmp_path / "store")
