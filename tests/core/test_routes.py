"""The HTTP route table both clouds share: matching, 405/404 bodies and the failure mapping."""

from __future__ import annotations

from typing import Any

import pytest

from shared.errors import RetryableError, StorageError
from shared.triggers import routes, service
from shared.triggers.http import Response


@pytest.fixture
def views(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """Replace the service views; returns the calls they received."""
    calls: list[tuple[str, Any]] = []

    def fake(name: str) -> Any:
        def view(*args: Any, **kwargs: Any) -> Response:
            calls.append((name, args[0] if args else None))
            return Response(200, {"view": name})

        return view

    for name in ("http_sync", "health", "http_get_run", "http_list_runs"):
        monkeypatch.setattr(service, name, fake(name))
    return calls


@pytest.mark.parametrize(
    ("method", "path", "view", "arg"),
    [
        ("POST", "/sync", "http_sync", b"{}"),
        ("GET", "/health", "health", None),
        ("HEAD", "/", "health", None),
        ("GET", "/runs/20240101T000000Z-abcdef12", "http_get_run", "20240101T000000Z-abcdef12"),
        ("GET", "/sync-http/health", "health", None),  # a mount name in front is dropped
        ("GET", "/runs", "http_list_runs", {}),
    ],
)
def test_routes_reach_their_view(
    views: list[tuple[str, Any]], method: str, path: str, view: str, arg: Any
) -> None:
    response = routes.route(method, path, b"{}", mounts={"sync-http"})
    assert response.status == 200 and response.body == {"view": view}
    assert views == [(view, arg)]


@pytest.mark.parametrize(
    ("method", "path", "allow", "hint"),
    [("GET", "/sync", "POST", "use POST /sync"), ("DELETE", "/health", "GET, HEAD", "use GET")],
)
def test_a_wrong_method_is_405_with_allow(
    views: list[tuple[str, Any]], method: str, path: str, allow: str, hint: str
) -> None:
    response = routes.route(method, path)
    assert response.status == 405 and response.headers["Allow"] == allow
    assert response.body == {"error": {"code": "method_not_allowed", "message": hint}}
    assert views == []


@pytest.mark.parametrize("path", ["/nowhere", "/runs/a/b", "/run"])
def test_an_unknown_path_is_404(views: list[tuple[str, Any]], path: str) -> None:
    response = routes.route("GET", path)
    assert response.status == 404 and response.body["error"]["code"] == "not_found"
    assert response.body["error"]["message"] == f"no route for GET {path}"


@pytest.mark.parametrize("exc", [RetryableError("busy"), StorageError("down")])
def test_a_transient_failure_is_503_with_retry_after(
    monkeypatch: pytest.MonkeyPatch, exc: Exception
) -> None:
    def failing() -> Response:
        raise exc

    monkeypatch.setattr(service, "health", failing)
    response = routes.respond(routes.HEALTH)
    assert (response.status, response.headers["Retry-After"]) == (503, "30")
    assert response.body["error"] == {
        "code": "unavailable",
        "message": f"temporarily unavailable: {exc}",
    }


def test_a_crash_is_a_500_without_details(monkeypatch: pytest.MonkeyPatch) -> None:
    def crashing() -> Response:
        raise KeyError("secret detail")

    monkeypatch.setattr(service, "health", crashing)
    response = routes.respond(routes.HEALTH)
    assert response.status == 500 and "secret" not in str(response.body)
    assert response.body["error"]["code"] == "internal"
