"""How the Chalice app finds its pipelines file."""

from __future__ import annotations

import os

import pytest

from tests.aws.conftest import AppLoader

pytestmark = pytest.mark.filterwarnings("ignore:IAMAuthorizer is not a supported")


def test_importing_the_app_leaves_the_config_variable_alone(
    app_env: dict[str, str], load_app: AppLoader, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRIVEPIPE_CONFIG", "chalicelib/drivepipe.toml")  # as config.json says
    module = load_app()
    assert os.environ["DRIVEPIPE_CONFIG"] == "chalicelib/drivepipe.toml"
    assert "sales" in module.service.config().pipelines  # found next to app.py, from any cwd
