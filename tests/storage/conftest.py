"""Fixtures for the storage contract suite: a ``Storage`` per backend with small thresholds."""

from __future__ import annotations

import uuid

import pytest

from devstack.servers import GcsEmulator
from shared.storage import Storage
from tests.storage.helpers import backend_of, open_small_threshold


@pytest.fixture
def backend(storage_url: str) -> str:
    """Which backend the current parametrization runs against."""
    return backend_of(storage_url)


@pytest.fixture
def store(storage_url: str) -> Storage:
    """A fresh, empty ``Storage`` for the current backend."""
    return open_small_threshold(storage_url)


@pytest.fixture(scope="session")
def gcs_honours_preconditions(gcs_emulator: GcsEmulator) -> bool:
    """Probe: does the emulator reject ifGenerationMatch=0 uploads onto an existing object?"""
    from google.api_core.exceptions import PreconditionFailed

    bucket = gcs_emulator.client().bucket(gcs_emulator.create_bucket(f"probe-{uuid.uuid4().hex}"))
    bucket.blob("probe").upload_from_string(b"first")
    try:
        bucket.blob("probe").upload_from_string(b"second", if_generation_match=0)
    except PreconditionFailed:
        return True
    return False
