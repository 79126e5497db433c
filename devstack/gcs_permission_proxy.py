"""A GCS permission-checking proxy: IAM enforcement in front of gcp-storage-emulator.

gcp-storage-emulator checks no permissions, so on it any code passes whatever roles the deploy
grants. This proxy stands between the functions and the emulator as one principal (the
functions' runtime service account) holding the roles ``deploy.package_gcp`` grants it, per
bucket. Every request is classified with :func:`devstack.gcs_roles.classify`; a request whose
permissions the granted roles (:data:`devstack.gcs_roles.ROLES`) do not all include gets 403
in GCS's JSON error shape, as GCS answers it; the rest is forwarded unchanged (with the
resumable-upload ``Location`` rewritten to come back through the proxy).

    with GcsPermissionProxy(emulator_url, {"in-bucket": ["roles/storage.objectViewer"]}) as p:
        env["STORAGE_EMULATOR_HOST"] = p.url

``p.decisions`` records every (action, permission, bucket, allowed), so a test can show which
permissions a code path used and which were refused; ``p.revoke(permission)`` takes one out of
every grant while the functions run.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import parse_qs, quote, urlsplit

from devstack.gcs_roles import Call, Need, UnknownCall, classify, denied_message, permissions

HOST = "127.0.0.1"
PRINCIPAL = "drivepipe-fn@local.iam.gserviceaccount.com"
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}


@dataclass(frozen=True)
class Decision:
    """One permission check the proxy made."""

    action: str
    permission: str
    bucket: str
    allowed: bool


def error_body(code: int, message: str, reason: str) -> bytes:
    """GCS's JSON error shape."""
    detail = {"message": message, "domain": "global", "reason": reason}
    error = {"code": code, "message": message, "errors": [detail]}
    return json.dumps({"error": error}).encode()


def upload_name(query: Mapping[str, list[str]], content_type: str, body: bytes) -> str | None:
    """The object an upload creates: ``?name=``, else the JSON metadata of the body."""
    if query.get("name"):
        return query["name"][0]
    if not body:
        return None
    text = body.decode("utf-8", errors="replace")
    if content_type.startswith("application/json"):
        candidates = [text]
    else:  # multipart/related: the first part is the object's JSON metadata
        candidates = re.findall(r"\r?\n\r?\n(\{.*?\})\r?\n", text, flags=re.S)[:1]
    for candidate in candidates:
        try:
            name = json.loads(candidate).get("name")
        except (json.JSONDecodeError, AttributeError):
            continue
        if isinstance(name, str):
            return name
    return None


class GcsPermissionProxy:
    """Serve ``127.0.0.1:<port>``, enforce ``grants`` (bucket -> roles; ``"*"`` = project)."""

    def __init__(
        self,
        upstream: str,
        grants: Mapping[str, Iterable[str]],
        *,
        principal: str = PRINCIPAL,
        remove: Iterable[str] = (),
    ) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or HOST, parts.port or 80)
        self.upstream_url = f"{parts.scheme}://{parts.netloc}"
        self.principal = principal
        self.grants = {bucket: permissions(roles) for bucket, roles in grants.items()}
        self.removed: set[str] = set(remove)  # taken out of every grant (tests: revoke())
        self.decisions: list[Decision] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """What ``STORAGE_EMULATOR_HOST`` should be."""
        if self._server is None:
            raise RuntimeError("the proxy is not started")
        return f"http://{HOST}:{self._server.server_address[1]}"

    def allows(self, need: Need) -> bool:
        """True when the grants on the bucket (or the project) include the permission."""
        granted = self.grants.get(need.bucket, frozenset()) | self.grants.get("*", frozenset())
        with self._lock:
            return need.permission in granted and need.permission not in self.removed

    def revoke(self, *permission: str) -> None:
        """Take permissions out of every grant, as if the roles lacked them."""
        with self._lock:
            self.removed.update(permission)

    def restore(self) -> None:
        """Grant the roles' permissions in full again."""
        with self._lock:
            self.removed.clear()

    def denied(self) -> list[Decision]:
        """Every refused check so far."""
        with self._lock:
            return [d for d in self.decisions if not d.allowed]

    def used(self) -> set[tuple[str, str]]:
        """(permission, bucket) of every allowed check so far."""
        with self._lock:
            return {(d.permission, d.bucket) for d in self.decisions if d.allowed}

    def _record(self, call: Call, need: Need, allowed: bool) -> None:
        with self._lock:
            self.decisions.append(Decision(call.action, need.permission, need.bucket, allowed))

    def _exists(self, bucket: str, name: str) -> bool:
        conn = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            conn.request("GET", f"/storage/v1/b/{quote(bucket, safe='')}/o/{quote(name, safe='')}")
            response = conn.getresponse()
            response.read()
            return response.status == 200
        finally:
            conn.close()

    def check(self, method: str, target: str, content_type: str, body: bytes) -> bytes | None:
        """None when allowed, else the 403 body (the decisions are recorded either way)."""
        split = urlsplit(target)
        query = parse_qs(split.query)
        try:
            call = classify(method, split.path, query)
        except UnknownCall as exc:
            message = f"permission proxy: no IAM mapping for {exc}; refused"
            return error_body(403, message, "forbidden")
        needs = list(call.needs)
        if call.action == "objects.insert" and call.writes is None and needs:
            name = upload_name(query, content_type, body)
            call = Call(call.action, call.needs, writes=(needs[0].bucket, name) if name else None)
        if call.writes and query.get("ifGenerationMatch") != ["0"] and self._exists(*call.writes):
            needs.append(Need("storage.objects.delete", call.writes[0]))  # replaces an object
        refused = None
        for need in needs:
            allowed = self.allows(need)
            self._record(call, need, allowed)
            if not allowed and refused is None:
                refused = need
        if refused is None:
            return None
        return error_body(403, denied_message(self.principal, refused), "forbidden")

    # ---- lifecycle ----------------------------------------------------------------------
    def start(self) -> GcsPermissionProxy:
        """Listen on a free port in a daemon thread."""
        self._server = ThreadingHTTPServer((HOST, 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving (idempotent)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> GcsPermissionProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                handler.rfile.readline()
                return b"".join(chunks)
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""


def _handler(proxy: GcsPermissionProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # quiet
            return

        def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _forward(self) -> None:
            body = _read_body(self)
            refusal = proxy.check(
                self.command, self.path, self.headers.get("Content-Type", ""), body
            )
            if refusal is not None:
                self._send(403, [("Content-Type", "application/json; charset=UTF-8")], refusal)
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            headers["Content-Length"] = str(len(body))
            conn = http.client.HTTPConnection(*proxy.upstream, timeout=120)
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                out = []
                for name, value in response.getheaders():
                    if name.lower() in _HOP_BY_HOP or name.lower() == "content-length":
                        continue
                    if name.lower() == "location":
                        value = value.replace(proxy.upstream_url, proxy.url)
                    out.append((name, value))
                self._send(response.status, out, data)
            finally:
                conn.close()

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _forward

    return Handler
