"""Fixtures for the storage contract suite: a ``Storage`` per backend with small thresholds."""

from __future__ import annotations

import pytest

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
