"""On AWS the notifications route is the one route without authentication.

Drive cannot sign a request or send an API key, so ``POST /drive/notifications`` is public and
checked by its channel token; every other route keeps the stage's IAM authorizer or API key.
Checked on Chalice's route table and on the Swagger document Chalice builds API Gateway from
(``chalice local`` and chalice.test enforce neither; see tests/aws/test_auth.py).
"""

from __future__ import annotations

from typing import Any

import pytest
from chalice.deploy.swagger import SwaggerGenerator

from tests.aws.conftest import AppLoader

pytestmark = pytest.mark.filterwarnings("ignore:IAMAuthorizer is not a supported")
WEBHOOK = ("/drive/notifications", "POST")


def unauthenticated(module: Any) -> set[tuple[str, str]]:
    routes = module.app.routes
    return {
        (path, method)
        for path, methods in routes.items()
        for method, entry in methods.items()
        if entry.authorizer is None and not entry.api_key_required
    }


def swagger_without_security(module: Any) -> set[tuple[str, str]]:
    arn = "arn:aws:lambda:us-east-1:111122223333:function:drivepipe-dev"
    generator = SwaggerGenerator("us-east-1", {"api_handler_arn": arn})
    swagger = generator.generate_swagger(module.app)
    return {
        (path, method.upper())
        for path, methods in swagger["paths"].items()
        for method, operation in methods.items()
        if method != "options" and not operation.get("security")
    }


@pytest.mark.parametrize("mode", ["iam", "api_key"])
def test_the_webhook_is_the_only_public_route(
    app_env: dict[str, str], load_app: AppLoader, mode: str
) -> None:
    module = load_app(DRIVEPIPE_HTTP_AUTH=mode, DRIVEPIPE_PUSH="true")
    assert unauthenticated(module) == {WEBHOOK}
    assert swagger_without_security(module) == {WEBHOOK}
    others = [p for p in module.app.routes if p != WEBHOOK[0]]
    assert others  # the API is still there, authenticated


def test_without_push_there_is_no_public_route(
    app_env: dict[str, str], load_app: AppLoader
) -> None:
    module = load_app(DRIVEPIPE_HTTP_AUTH="iam", DRIVEPIPE_PUSH=None)
    assert unauthenticated(module) == set() and WEBHOOK[0] not in module.app.routes
    assert swagger_without_security(module) == set()


def test_the_push_worker_is_registered_on_its_queue(
    app_env: dict[str, str], load_app: AppLoader
) -> None:
    module = load_app(DRIVEPIPE_PUSH="true", DRIVEPIPE_PUSH_QUEUE="drivepipe-push-dev")
    sources = {s.name: s for s in module.app.event_sources}
    assert sources["push_worker"].queue == "drivepipe-push-dev"
    assert "push_worker" not in {
        s.name for s in load_app(DRIVEPIPE_PUSH_QUEUE=None).app.event_sources
    }
