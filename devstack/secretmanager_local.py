"""A LOCAL STAND-IN for Google Secret Manager's REST API (v1): not an official emulator.

Google ships no Secret Manager emulator. This in-memory server answers the four calls
:class:`shared.run.channel_secrets.GcpSecretManager` makes, at the paths and with the bodies of
``secretmanager.v1.json`` (google-api-python-client's discovery document; the tests check every
request and answer against it):

- ``POST /v1/projects/P/secrets?secretId=ID`` (a ``Secret`` with ``replication``): 200 the
  secret, 409 ``ALREADY_EXISTS``;
- ``POST /v1/projects/P/secrets/ID:addVersion`` (``{"payload": {"data": BASE64}}``): 200 the
  ``SecretVersion``, 404 for no such secret;
- ``GET /v1/projects/P/secrets/ID/versions/latest:access`` (or ``versions/N``): 200
  ``{"name", "payload": {"data"}}``;
- ``DELETE /v1/projects/P/secrets/ID``: 200 ``{}``.

Point the client at it with ``SECRET_MANAGER_EMULATOR_HOST=127.0.0.1:PORT`` (unauthenticated).

With ``grants`` (resource -> IAM permissions: ``projects/P`` or ``projects/P/secrets/ID``, as
``deploy.gcp_grants.runtime_secret_grants`` reads them off the deploy script) it enforces them
as Secret Manager does, for one principal: ``secrets.create`` on the parent project,
``versions.add`` / ``versions.access`` / ``secrets.delete`` on the secret, a project grant
covering its secrets (IAM inheritance). A refusal is 403 ``PERMISSION_DENIED``, and
``decisions`` records every check.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

_SECRETS = re.compile(r"^/v1/(projects/[^/]+)/secrets$")
_ADD = re.compile(r"^/v1/(projects/[^/]+/secrets/[A-Za-z0-9_-]{1,255}):addVersion$")
_ACCESS = re.compile(r"^/v1/(projects/[^/]+/secrets/[A-Za-z0-9_-]+)/versions/(\w+):access$")
_SECRET = re.compile(r"^/v1/(projects/[^/]+/secrets/[A-Za-z0-9_-]+)$")
_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")


@dataclass
class Stored:
    """One secret and its versions' payloads (base64, as sent)."""

    created: str
    versions: list[str] = field(default_factory=list)


class SecretManagerStandIn:
    """The server; use as a context manager. ``host`` is for SECRET_MANAGER_EMULATOR_HOST."""

    def __init__(self, grants: Mapping[str, Iterable[str]] | None = None) -> None:
        self.secrets: dict[str, Stored] = {}
        self.requests: list[tuple[str, str, Any]] = []  # (method, path, JSON body) for tests
        self.grants = None if grants is None else {r: frozenset(p) for r, p in grants.items()}
        self.decisions: list[tuple[str, str, bool]] = []  # (permission, resource, allowed)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``."""
        return f"127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> SecretManagerStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # ---- the API ----------------------------------------------------------------------------
    def allows(self, permission: str, resource: str) -> bool:
        """Whether the grants (on the resource or its project) include ``permission``."""
        if self.grants is None:
            return True
        project = "/".join(resource.split("/")[:2])
        granted = self.grants.get(resource, frozenset()) | self.grants.get(project, frozenset())
        allowed = permission in granted
        self.decisions.append((permission, resource, allowed))
        return allowed

    def denied(self) -> list[tuple[str, str]]:
        """(permission, resource) of every refused check so far."""
        with self._lock:
            return [(p, r) for p, r, ok in self.decisions if not ok]

    def answer(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> Any:
        """(status, JSON body) for one request."""
        with self._lock:
            self.requests.append((method, path, body))
            needed = _permission(method, path)
            if needed is not None and not self.allows(*needed):
                permission, resource = needed
                message = (
                    f"Permission '{permission}' denied for resource '{resource}' "
                    "(or it may not exist)."
                )
                return _error(403, "PERMISSION_DENIED", message)
            if method == "POST" and (match := _SECRETS.match(path)):
                return self._create(match.group(1), (query.get("secretId") or [""])[0], body)
            if method == "POST" and (match := _ADD.match(path)):
                return self._add(match.group(1), body)
            if method == "GET" and (match := _ACCESS.match(path)):
                return self._access(match.group(1), match.group(2))
            if method == "DELETE" and (match := _SECRET.match(path)):
                if self.secrets.pop(match.group(1), None) is None:
                    return _error(404, "NOT_FOUND", f"Secret [{match.group(1)}] not found.")
                return 200, {}
        return _error(404, "NOT_FOUND", f"no such method: {method} {path}")

    def _create(self, parent: str, secret_id: str, body: Any) -> Any:
        if not _ID.match(secret_id):
            return _error(400, "INVALID_ARGUMENT", "secretId is invalid")
        if not isinstance(body, dict) or not isinstance(body.get("replication"), dict):
            return _error(400, "INVALID_ARGUMENT", "replication is required")
        name = f"{parent}/secrets/{secret_id}"
        if name in self.secrets:
            return _error(409, "ALREADY_EXISTS", f"Secret [{name}] already exists.")
        self.secrets[name] = Stored(_now())
        return 200, {"name": name, "replication": body["replication"], "createTime": _now()}

    def _add(self, name: str, body: Any) -> Any:
        stored = self.secrets.get(name)
        if stored is None:
            return _error(404, "NOT_FOUND", f"Secret [{name}] not found.")
        data = ((body or {}).get("payload") or {}).get("data") if isinstance(body, dict) else None
        try:
            base64.b64decode(str(data), validate=True)
        except (binascii.Error, ValueError):
            return _error(400, "INVALID_ARGUMENT", "payload.data must be base64")
        stored.versions.append(str(data))
        version = f"{name}/versions/{len(stored.versions)}"
        return 200, {"name": version, "createTime": _now(), "state": "ENABLED"}

    def _access(self, name: str, version: str) -> Any:
        stored = self.secrets.get(name)
        if stored is None or not stored.versions:
            return _error(404, "NOT_FOUND", f"Secret [{name}] not found or has no versions.")
        index = len(stored.versions) if version == "latest" else int(version or 0)
        if not 1 <= index <= len(stored.versions):
            return _error(
                404, "NOT_FOUND", f"Secret Version [{name}/versions/{version}] not found."
            )
        return 200, {
            "name": f"{name}/versions/{index}",
            "payload": {"data": stored.versions[index - 1]},
        }

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    status, answer = _error(400, "INVALID_ARGUMENT", "body is not JSON")
                else:
                    status, answer = stand_in.answer(
                        self.command, url.path, parse_qs(url.query), body
                    )
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler


def _permission(method: str, path: str) -> tuple[str, str] | None:
    """(IAM permission, resource it is checked on) of a call (secretmanager.v1.json's methods)."""
    if method == "POST" and (match := _SECRETS.match(path)):
        return "secretmanager.secrets.create", match.group(1)
    if method == "POST" and (match := _ADD.match(path)):
        return "secretmanager.versions.add", match.group(1)
    if method == "GET" and (match := _ACCESS.match(path)):
        return "secretmanager.versions.access", match.group(1)
    if method == "DELETE" and (match := _SECRET.match(path)):
        return "secretmanager.secrets.delete", match.group(1)
    return None


def _error(code: int, status: str, message: str) -> tuple[int, dict[str, Any]]:
    return code, {"error": {"code": code, "message": message, "status": status}}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
