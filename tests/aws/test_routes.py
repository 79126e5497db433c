"""Chalice serves the core's route table (``shared.triggers.routes``), as Cloud Functions does."""

from __future__ import annotations

import pytest

from shared.triggers import routes
from tests.aws.conftest import AppLoader

pytestmark = pytest.mark.filterwarnings("ignore:IAMAuthorizer is not a supported")


def test_every_chalice_route_is_a_core_route(app_env: dict[str, str], load_app: AppLoader) -> None:
    module = load_app()
    chalice = {(path, method) for path, methods in module.app.routes.items() for method in methods}
    core = {(r.path, m) for r in routes.ROUTES for m in r.methods if m != "HEAD"}
    assert chalice == core - {("/", "GET")}  # "/" is GCP's alias of /health (no stage path)
