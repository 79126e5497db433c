"""Authentication is chosen per stage and an open API is refused unless made explicit.

chalice.test.Client and ``chalice local`` do not enforce IAMAuthorizer or API keys (Chalice's
LocalGatewayAuthorizer admits every request for non-Chalice authorizers and ignores
``api_key_required``), so these tests check the route table API Gateway is built from.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from chalice import IAMAuthorizer

from tests.aws.conftest import APP_PATH, REPO_ROOT, AppLoader

CHALICE_CONFIG = REPO_ROOT / "chalice_app" / ".chalice" / "config.json"
DEPLOYABLE_STAGES = ("dev", "prod")
pytestmark = pytest.mark.filterwarnings("ignore:IAMAuthorizer is not a supported")


def all_route_entries(module: object) -> list[object]:
    routes = module.app.routes  # type: ignore[attr-defined]
    return [entry for methods in routes.values() for entry in methods.values()]


def test_iam_mode_puts_an_iam_authorizer_on_every_route(
    app_env: dict[str, str], load_app: AppLoader
) -> None:
    module = load_app(DRIVEPIPE_HTTP_AUTH="iam")
    entries = all_route_entries(module)
    assert {(e.uri_pattern, e.method) for e in entries} == {
        ("/sync", "POST"),
        ("/health", "GET"),
        ("/runs", "GET"),
        ("/runs/{run_id}", "GET"),
    }
    for entry in entries:
        assert isinstance(entry.authorizer, IAMAuthorizer), entry.uri_pattern
        assert not entry.api_key_required


def test_api_key_mode_requires_a_key_on_every_route(
    app_env: dict[str, str], load_app: AppLoader
) -> None:
    module = load_app(DRIVEPIPE_HTTP_AUTH="api_key")
    for entry in all_route_entries(module):
        assert entry.api_key_required is True, entry.uri_pattern
        assert entry.authorizer is None


@pytest.mark.parametrize("mode", [None, "none", "NONE", ""])
def test_an_unauthenticated_api_is_refused_at_import(
    app_env: dict[str, str], load_app: AppLoader, mode: str | None
) -> None:
    with pytest.raises(RuntimeError, match="refusing to serve the HTTP API without auth"):
        load_app(DRIVEPIPE_HTTP_AUTH=mode, DRIVEPIPE_PUBLIC=None)


def test_an_unknown_auth_mode_is_refused(app_env: dict[str, str], load_app: AppLoader) -> None:
    with pytest.raises(RuntimeError, match="DRIVEPIPE_HTTP_AUTH='cognito' is not one of"):
        load_app(DRIVEPIPE_HTTP_AUTH="cognito")


@pytest.mark.parametrize("public", ["false", "1", "yes"])
def test_only_public_true_opens_the_api(
    app_env: dict[str, str], load_app: AppLoader, public: str
) -> None:
    with pytest.raises(RuntimeError, match="refusing"):
        load_app(DRIVEPIPE_HTTP_AUTH="none", DRIVEPIPE_PUBLIC=public)
    module = load_app(DRIVEPIPE_HTTP_AUTH="none", DRIVEPIPE_PUBLIC="true")
    for entry in all_route_entries(module):
        assert entry.authorizer is None and not entry.api_key_required


def test_a_missing_input_bucket_fails_at_import(
    app_env: dict[str, str], load_app: AppLoader
) -> None:
    with pytest.raises(RuntimeError, match="DRIVEPIPE_INPUT_BUCKET is not set"):
        load_app(DRIVEPIPE_INPUT_BUCKET=None)


def test_the_refusal_stops_a_real_cold_start(app_env: dict[str, str], tmp_path: Path) -> None:
    """A fresh interpreter importing app.py (as Lambda does) exits with the clear message."""
    env = {"PATH": "/usr/bin:/bin", "DRIVEPIPE_INPUT_BUCKET": app_env["DRIVEPIPE_INPUT_BUCKET"]}
    env.update({k: v for k, v in os.environ.items() if k.startswith("DRIVE")})
    env.pop("DRIVEPIPE_HTTP_AUTH", None)
    done = subprocess.run(
        [sys.executable, "-c", f"import runpy; runpy.run_path({str(APP_PATH)!r})"],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode != 0
    assert "InsecureConfigError: refusing to serve the HTTP API without authentication" in (
        done.stderr
    )


def test_deployable_stages_are_authenticated_and_not_public() -> None:
    stages = json.loads(CHALICE_CONFIG.read_text())["stages"]
    for name in DEPLOYABLE_STAGES:
        env = stages[name]["environment_variables"]
        assert env["DRIVEPIPE_HTTP_AUTH"] in ("iam", "api_key"), name
        assert "DRIVEPIPE_PUBLIC" not in env, name


@pytest.mark.parametrize("stage", DEPLOYABLE_STAGES)
def test_each_stage_config_imports_with_auth_on_every_route(
    app_env: dict[str, str], load_app: AppLoader, stage: str
) -> None:
    """The stage's own environment_variables (buckets swapped for moto's) give an authed app;
    with push (the shipped dev stage) the Drive webhook is the one public route
    (tests/aws/test_public_route.py)."""
    env = json.loads(CHALICE_CONFIG.read_text())["stages"][stage]["environment_variables"]
    env = {**env, "DRIVEPIPE_CONFIG": str(REPO_ROOT / "chalice_app" / env["DRIVEPIPE_CONFIG"])}
    module = load_app(**env)
    assert env["DRIVEPIPE_INPUT_BUCKET"] == module.INPUT_BUCKET
    public = {"/drive/notifications"} if env.get("DRIVEPIPE_PUSH") == "true" else set()
    assert {p for p in module.app.routes if p in public} == public
    for entry in all_route_entries(module):
        if entry.uri_pattern in public:
            continue
        assert isinstance(entry.authorizer, IAMAuthorizer) or entry.api_key_required
