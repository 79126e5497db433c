"""The HTTP route table both clouds serve, and what an unexpected failure answers.

Chalice registers each route with its own decorator (API Gateway matches paths and methods);
Cloud Functions has one HTTP entry point, which hands method and path to :func:`route` (405
and 404 included). Both end in :func:`respond`, so a view's call and its error mapping are the
same on AWS and GCP: a transient failure is ``503`` with ``Retry-After``, any other escape
``500``.

This is apart from :mod:`shared.triggers.http` because it calls :mod:`shared.triggers.service`,
which imports that module.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from shared import deadline
from shared.errors import ApiError, RetryableError, StorageError
from shared.log import get_logger
from shared.triggers import service
from shared.triggers.http import Response, error_response

log = get_logger("http")
RETRY_AFTER_SECONDS = 30
Body = bytes | str | None


@dataclass(frozen=True)
class Route:
    """One path (a ``{name}`` segment matches any one segment), its methods and its view."""

    path: str
    methods: tuple[str, ...]
    view: Callable[[dict[str, str], Body], Response]

    def match(self, parts: list[str]) -> dict[str, str] | None:
        """The path parameters when ``parts`` (the path's segments) fit this route, else None."""
        pattern = [p for p in self.path.split("/") if p]
        if len(pattern) != len(parts):
            return None
        params: dict[str, str] = {}
        for want, got in zip(pattern, parts, strict=True):
            if want.startswith("{") and want.endswith("}"):
                params[want[1:-1]] = got
            elif want != got:
                return None
        return params


SYNC = Route("/sync", ("POST",), lambda _, body: service.http_sync(body, trigger="http"))
HEALTH = Route("/health", ("GET", "HEAD"), lambda _, body: service.health())
ROOT = Route("/", HEALTH.methods, HEALTH.view)
RUN = Route("/runs/{run_id}", ("GET", "HEAD"), lambda p, _: service.http_get_run(p["run_id"]))
RUNS = Route("/runs", ("GET", "HEAD"), lambda query, _: service.http_list_runs(query))
ROUTES = (SYNC, HEALTH, ROOT, RUN, RUNS)


def respond(entry: Route, params: dict[str, str] | None = None, body: Body = None) -> Response:
    """Call the route's view; a transient failure is 503 with ``Retry-After``, a crash 500."""
    try:
        response = entry.view(params or {}, body)
    except (RetryableError, StorageError) as exc:
        log.warning("%s: transient failure: %s", entry.path, exc)
        response = error_response(
            ApiError(f"temporarily unavailable: {exc}", status=503, code="unavailable")
        )
        return _with_headers(response, {"Retry-After": str(RETRY_AFTER_SECONDS)})
    except Exception:
        log.exception("%s: unexpected error", entry.path)
        return error_response(
            ApiError("internal error; see the function's logs", status=500, code="internal")
        )
    if response.status == 503 and "Retry-After" not in response.headers:
        # a view that answered "unavailable" itself (storage or Drive down): same as above
        log.warning("%s: transient failure: %s", entry.path, response.body.get("error"))
        return _with_headers(response, {"Retry-After": str(RETRY_AFTER_SECONDS)})
    return response


def route(
    method: str,
    path: str,
    body: Body = None,
    *,
    mounts: Collection[str] = (),
    query: Mapping[str, str] | None = None,
) -> Response:
    """Answer ``method path`` from :data:`ROUTES`: the view's response, 405 or 404.

    A leading segment in ``mounts`` (the function's own name, which some proxies keep in the
    path) is dropped first. The view gets the ``query`` parameters with the path's on top, and
    runs within the function's deadline when its deployed timeout is known
    (:func:`shared.deadline.from_env`; on AWS, Chalice's middleware sets it).
    """
    parts = [p for p in path.split("/") if p]
    if parts and parts[0] in mounts:
        parts = parts[1:]
    for entry in ROUTES:
        params = entry.match(parts)
        if params is None:
            continue
        if method not in entry.methods:
            return _method_not_allowed(entry)
        with deadline.within(deadline.from_env()):
            return respond(entry, {**(query or {}), **params}, body)
    return error_response(ApiError(f"no route for {method} {path}", status=404, code="not_found"))


def _method_not_allowed(entry: Route) -> Response:
    allow = ", ".join(entry.methods)
    hint = f"use POST {entry.path}" if entry.methods == ("POST",) else "use GET"
    response = error_response(ApiError(hint, status=405, code="method_not_allowed"))
    return _with_headers(response, {"Allow": allow})


def _with_headers(response: Response, headers: dict[str, str]) -> Response:
    return Response(response.status, response.body, {**response.headers, **headers})
