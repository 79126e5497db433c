"""The runtime settings: one validated model of the ``DRIVEPIPE_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.errors import ConfigError
from shared.run.state import claim_event
from shared.settings import VARIABLES, RuntimeSettings, runtime_settings
from shared.storage import open_storage


def test_defaults_when_unset_or_empty() -> None:
    for env in ({}, dict.fromkeys(VARIABLES, "")):
        settings = runtime_settings(env)
        assert settings == RuntimeSettings()
        assert settings.checkpoint_every is None
        assert (settings.checkpoint_seconds, settings.lease_seconds) == (10.0, 900.0)
        assert (settings.event_claim_seconds, settings.event_wait_seconds) == (900.0, 10.0)


def test_values_are_parsed() -> None:
    settings = runtime_settings(
        {
            "DRIVEPIPE_CHECKPOINT_EVERY": "5",
            "DRIVEPIPE_CHECKPOINT_SECONDS": "2.5",
            "DRIVEPIPE_LEASE_SECONDS": " 30 ",
            "DRIVEPIPE_EVENT_CLAIM_SECONDS": "60",
            "DRIVEPIPE_EVENT_WAIT_SECONDS": "0.5",
        }
    )
    assert settings.checkpoint_every == 5
    assert settings.checkpoint_seconds == 2.5
    assert settings.lease_seconds == 30.0
    assert (settings.event_claim_seconds, settings.event_wait_seconds) == (60.0, 0.5)


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("DRIVEPIPE_CHECKPOINT_EVERY", "0"),
        ("DRIVEPIPE_CHECKPOINT_EVERY", "1.5"),
        ("DRIVEPIPE_CHECKPOINT_SECONDS", "-1"),
        ("DRIVEPIPE_LEASE_SECONDS", "soon"),
        ("DRIVEPIPE_EVENT_CLAIM_SECONDS", "inf"),
        ("DRIVEPIPE_EVENT_WAIT_SECONDS", "nan"),
    ],
)
def test_a_bad_value_names_its_variable(name: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=name) as info:
        runtime_settings({name: raw})
    assert repr(raw) in str(info.value)


def test_the_environment_is_read_again_when_it_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIVEPIPE_LEASE_SECONDS", "7")
    assert runtime_settings().lease_seconds == 7.0
    assert runtime_settings() is runtime_settings()  # validated once per value set
    monkeypatch.setenv("DRIVEPIPE_LEASE_SECONDS", "8")
    assert runtime_settings().lease_seconds == 8.0


def test_core_modules_use_the_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DRIVEPIPE_EVENT_WAIT_SECONDS", "later")
    with pytest.raises(ConfigError, match="DRIVEPIPE_EVENT_WAIT_SECONDS"):
        claim_event(open_storage(str(tmp_path)), "s3:b/k#1")
