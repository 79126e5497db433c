"""A loopback stand-in for BigQuery's tables API, checked against the v2 discovery document.

No BigQuery emulator exists on the package registries, so drivepipe's BigQuery requests are
checked against the published API description instead: ``bigquery.v2.json``, the discovery
document google-api-python-client ships. Every request must match one of its methods (HTTP
method and path template), use only that method's query parameters (typed), and carry a body
that validates against the method's request schema: known fields only, right JSON types,
no output-only (``readOnly``) fields, and the fields the document marks ``[Required]`` /
``Required.``. A request that does not is answered 400 in Google's error shape, and kept in
``rejected``. Tables live in memory, so ``get`` → 404 → ``insert`` → ``update`` behave as in
BigQuery (409 on a second insert, 404 on updating a missing table). It checks shapes, not
BigQuery's semantics beyond that: it reads no file, and infers no schema.

    with BigQueryLocal() as bq:      # serves on 127.0.0.1:<free port>
        os.environ["BIGQUERY_API_URL"] = bq.url
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

import googleapiclient

DISCOVERY = (
    Path(googleapiclient.__file__).parent / "discovery_cache" / "documents" / "bigquery.v2.json"
)
_REQUIRED = re.compile(r"^\s*(\[Required\]|Required\.)")


def load_discovery() -> dict[str, Any]:
    """The BigQuery v2 discovery document shipped with google-api-python-client."""
    document: dict[str, Any] = json.loads(DISCOVERY.read_text())
    return document


class Invalid(Exception):
    """A request the discovery document does not allow."""


class Validator:
    """Match requests to discovery methods and validate their parameters and bodies."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.doc = document
        self.service_path = "/" + document["servicePath"].strip("/") + "/"
        self.methods = []
        for resource, body in document["resources"].items():
            for name, method in body.get("methods", {}).items():
                pattern = re.sub(r"\{\+?(\w+)\}", r"(?P<\1>[^/]+)", method["path"])
                self.methods.append((f"{resource}.{name}", method, re.compile(f"^{pattern}$")))

    def match(self, verb: str, path: str) -> tuple[str, dict[str, Any], dict[str, str]]:
        """(method id, method, path parameters) for a request; Invalid if none matches."""
        if not path.startswith(self.service_path):
            raise Invalid(f"{path} is not under {self.service_path}")
        rest = path[len(self.service_path) :]
        for name, method, pattern in self.methods:
            found = pattern.match(rest)
            if found and method["httpMethod"] == verb:
                return name, method, found.groupdict()
        raise Invalid(f"no method {verb} {rest} in the discovery document")

    def query(self, method: dict[str, Any], query: dict[str, list[str]]) -> None:
        params = method.get("parameters", {})
        for name, values in query.items():
            spec = params.get(name)
            if spec is None or spec.get("location") != "query":
                raise Invalid(f"unknown query parameter {name!r}")
            if spec.get("type") == "boolean" and values[-1] not in ("true", "false"):
                raise Invalid(f"{name}={values[-1]!r} is not a boolean")

    def body(self, method: dict[str, Any], body: Any) -> None:
        request = method.get("request")
        if request is None:
            if body is not None:
                raise Invalid("this method takes no request body")
            return
        if not isinstance(body, dict):
            raise Invalid("the request body must be a JSON object")
        self.value(body, request, "body")

    def value(self, value: Any, spec: dict[str, Any], where: str) -> None:
        if "$ref" in spec:
            spec = self.doc["schemas"][spec["$ref"]]
        kind = spec.get("type")
        if kind == "object":
            if not isinstance(value, dict):
                raise Invalid(f"{where} must be an object")
            props = spec.get("properties", {})
            extra = spec.get("additionalProperties")
            for key, item in value.items():
                if key in props:
                    if props[key].get("readOnly"):
                        raise Invalid(f"{where}.{key} is output only")
                    self.value(item, props[key], f"{where}.{key}")
                elif extra is not None:
                    self.value(item, extra, f"{where}.{key}")
                else:
                    raise Invalid(f"{where}.{key} is not a field of {spec.get('id', 'object')}")
            for key, prop in props.items():
                if _REQUIRED.match(prop.get("description", "")) and key not in value:
                    raise Invalid(f"{where}.{key} is required")
        elif kind == "array":
            if not isinstance(value, list):
                raise Invalid(f"{where} must be an array")
            for n, item in enumerate(value):
                self.value(item, spec["items"], f"{where}[{n}]")
        elif kind == "string":
            ok = isinstance(value, str)
            if spec.get("format") in ("int64", "uint64"):
                ok = ok and value.lstrip("-").isdigit()
            if not ok:
                raise Invalid(
                    f"{where} must be a string"
                    + (f" ({spec['format']})" if spec.get("format") else "")
                )
            if "enum" in spec and value not in spec["enum"]:
                raise Invalid(f"{where}: {value!r} is not one of {spec['enum']}")
        elif kind == "boolean" and not isinstance(value, bool):
            raise Invalid(f"{where} must be a boolean")
        elif kind == "integer" and (isinstance(value, bool) or not isinstance(value, int)):
            raise Invalid(f"{where} must be an integer")
        elif kind == "number" and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise Invalid(f"{where} must be a number")


class BigQueryLocal:
    """The stand-in, serving on 127.0.0.1 in a thread; a context manager that stops it."""

    def __init__(self, port: int = 0) -> None:
        self.validator = Validator(load_discovery())
        self.tables: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.requests: list[dict[str, Any]] = []  # every request: method id, params, body
        self.rejected: list[dict[str, Any]] = []  # requests answered 400, with the reason
        self.fail_next: list[tuple[int, str]] = []  # (status, message) answered next, in order
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The API root, as ``BIGQUERY_API_URL`` takes it."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{self.validator.service_path}"

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def calls(self, method: str) -> list[dict[str, Any]]:
        """The accepted requests of one method, e.g. ``"tables.insert"``."""
        return [r for r in self.requests if r["method"] == method]

    def answer(self, verb: str, raw_path: str, raw_body: bytes) -> tuple[int, dict[str, Any]]:
        """Validate and serve one request: (status, JSON body)."""
        parts = urlsplit(raw_path)
        try:
            body = json.loads(raw_body) if raw_body else None
            name, method, params = self.validator.match(verb, parts.path)
            query = parse_qs(parts.query)
            self.validator.query(method, query)
            self.validator.body(method, body)
        except (Invalid, ValueError) as exc:
            with self._lock:
                self.rejected.append({"verb": verb, "path": raw_path, "error": str(exc)})
            return 400, _error(400, f"Invalid request: {exc}", "invalid")
        with self._lock:
            self.requests.append({"method": name, "params": params, "query": query, "body": body})
            if self.fail_next:
                status, message = self.fail_next.pop(0)
                return status, _error(status, message, "backendError")
            return self._serve(name, params, body)

    def _serve(self, name: str, params: dict[str, str], body: Any) -> tuple[int, dict[str, Any]]:
        if not name.startswith("tables."):
            return 501, _error(501, f"{name} is not served by this stand-in", "notImplemented")
        project, dataset = params["projectId"], params["datasetId"]
        if name == "tables.insert":
            ref = body.get("tableReference", {})
            if (ref.get("projectId"), ref.get("datasetId")) != (project, dataset):
                return 400, _error(400, "tableReference does not match the path", "invalid")
            key = (project, dataset, ref.get("tableId", ""))
            if key in self.tables:
                return 409, _error(409, f"Already Exists: Table {'.'.join(key)}", "duplicate")
            self.tables[key] = {**body, "kind": "bigquery#table", "id": ":".join(key)}
            return 200, self.tables[key]
        key = (project, dataset, params.get("tableId", ""))
        if key not in self.tables:
            return 404, _error(404, f"Not found: Table {'.'.join(key)}", "notFound")
        if name in ("tables.update", "tables.patch"):
            merged = body if name == "tables.update" else {**self.tables[key], **body}
            self.tables[key] = {**merged, "kind": "bigquery#table", "id": ":".join(key)}
        elif name == "tables.delete":
            del self.tables[key]
            return 204, {}
        return 200, self.tables[key]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                status, body = stub.answer(self.command, self.path, self.rfile.read(length))
                data = json.dumps(body).encode() if status != 204 else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _reply

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler


def _error(code: int, message: str, reason: str) -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "message": message,
            "errors": [{"reason": reason, "message": message}],
        }
    }
