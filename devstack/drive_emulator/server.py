"""HTTP plumbing: routing, auth, fault injection, JSON and media responses."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import socket
import struct
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import parse_qsl, unquote, urlsplit

from devstack.drive_emulator.changelog import invalid_token
from devstack.drive_emulator.errors import ApiError, invalid_value
from devstack.drive_emulator.exports import conversion_unsupported
from devstack.drive_emulator.params import POST_METHODS, Params
from devstack.drive_emulator.tree import Entry, TreeError

if TYPE_CHECKING:
    from devstack.drive_emulator.emulator import DriveEmulator

log = logging.getLogger(__name__)
SERVICE_PREFIX = "/drive/v3/"
CHUNK = 64 * 1024
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_PARENTS_TERM = re.compile(r"'((?:[^'\\]|\\.)*)'\s+in\s+parents")
_SINGLE_ROUTES = {"changes": "drive.changes.list", "about": "drive.about.get"}
_JSON_ONLY = frozenset(
    {
        "drive.files.list",
        "drive.changes.getStartPageToken",
        "drive.changes.list",
        "drive.about.get",
        *POST_METHODS,
    }
)
MAX_BODY_BYTES = 64 * 1024  # a Channel resource is a few hundred bytes
# EmulatorStats.requests keys of the changes-feed methods.
_ENDPOINTS = {
    "drive.changes.getStartPageToken": "start_page_token",
    "drive.changes.list": "changes",
    "drive.about.get": "about",
    "drive.changes.watch": "watch",
    "drive.channels.stop": "stop",
}
_INVALID_CREDENTIALS = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
    "cookie or other valid authentication credential. See "
    "https://developers.google.com/identity/sign-in/web/devconsole-project."
)


class EmulatorServer(ThreadingHTTPServer):
    """ThreadingHTTPServer with daemon threads, a deeper backlog and a link to the emulator."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], emulator: DriveEmulator) -> None:
        self.emulator = emulator
        super().__init__(address, DriveRequestHandler)


class DriveRequestHandler(BaseHTTPRequestHandler):
    """One HTTP/1.1 keep-alive connection; each request is answered by `_dispatch`."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    server: EmulatorServer

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        method, _ = _route(urlsplit(self.path).path)
        if method not in POST_METHODS:
            self._not_allowed()
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:  # answered without reading it; the connection closes
            self.close_connection = True
            self._send_error(ApiError(413, "requestTooLarge", "Request Entity Too Large"))
            return
        self._body = self.rfile.read(length) if length else b""
        self._dispatch()

    def _not_allowed(self) -> None:
        self._drain_body()
        message = "The emulator serves GET, and POST for changes.watch and channels.stop."
        self._send_error(ApiError(405, "methodNotAllowed", message))

    do_PUT = do_PATCH = do_DELETE = _not_allowed

    # ---- dispatch -------------------------------------------------------------------------
    def _dispatch(self) -> None:
        emu = self.server.emulator
        url = urlsplit(self.path)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        method, file_id = _route(url.path)
        if self.command == "GET" and method in POST_METHODS:
            self._not_allowed()
            return
        endpoint = _endpoint_name(method, query)
        emu.stats.count_request(endpoint)
        parents = _parents_in(query.get("q", "")) if endpoint == "list" else []
        if parents and not query.get("pageToken"):
            emu.stats.count_listed(parents)
        subject = ",".join(parents) if endpoint == "list" else file_id
        emu.stats.enter(endpoint, subject)
        try:
            self._answer(method, file_id, query, endpoint)
        finally:
            emu.stats.leave(endpoint, subject)

    def _answer(
        self, method: str | None, file_id: str, query: dict[str, str], endpoint: str
    ) -> None:
        emu = self.server.emulator
        try:
            delay = emu.faults.latency()
            if delay > 0:
                time.sleep(delay)
            if method is None:
                raise ApiError(404, "notFound", f"Not Found: {self.path.split('?')[0]}")
            self._authorize(query)
            limited = emu.faults.over_qps()
            if limited is not None:
                emu.stats.count_fault("qps_limit")
                raise limited
            fault = emu.faults.pick(
                media=endpoint in ("media", "export"), request=f"{self.command} {self.path}"
            )
            if fault is not None:
                emu.stats.count_fault(fault)
                if fault == "reset":
                    self._reset_connection()
                    return
                if fault not in ("truncate", "corrupt"):
                    raise emu.faults.error_for(fault)
            self._handle(method, file_id, query, fault)
        except ApiError as error:
            self._send_error(error)
        except TreeError as error:
            self._send_error(ApiError(500, "internalError", f"Emulator tree error: {error}"))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception:
            log.exception("drive emulator failed on %s", self.path)
            self._send_error(ApiError(500, "backendError", "Backend Error"))

    def _handle(self, method: str, file_id: str, query: dict[str, str], fault: str | None) -> None:
        emu = self.server.emulator
        params = Params(query, method)
        alt = params.text("alt", "json")
        if alt not in ("json", "media"):
            raise invalid_value("alt")
        if method in _JSON_ONLY and alt == "media":
            raise invalid_value("alt")
        if method == "drive.files.list":
            partial = emu.faults.config.incomplete_batches
            self._send_json(emu.api.list_files(params, emu.url, partial), params)
        elif method == "drive.changes.getStartPageToken":
            self._send_json(emu.changes_api.start_page_token(params), params)
        elif method == "drive.changes.list":
            if emu.faults.config.expire_page_tokens and "pageToken" in query:
                emu.stats.count_fault("expired_page_token")
                raise invalid_token()
            self._send_json(emu.changes_api.list_changes(params, emu.url), params)
        elif method == "drive.about.get":
            self._send_json(emu.changes_api.about(params), params)
        elif method == "drive.changes.watch":
            body = self._json_body()
            self._send_json(emu.changes_api.watch(params, body, emu.url, emu.watch), params)
        elif method == "drive.channels.stop":
            emu.watch.stop(self._json_body())
            self._send_body(b"", "text/plain", 204, {}, None)
        elif method == "drive.files.get" and alt == "media":
            entry = emu.api.lookup(file_id, params)
            self._send_media(entry, fault)
        elif method == "drive.files.get":
            self._send_json(emu.api.get_file(file_id, params, emu.url), params)
        else:
            entry = emu.api.lookup(
                file_id, Params({"supportsAllDrives": "true"}, "drive.files.get")
            )
            target = params.text("mimeType")
            if not target:
                raise conversion_unsupported()
            data = emu.exporter.export(entry, emu.tree.root / entry.relpath, target)
            if len(data) > emu.export_limit_bytes:
                raise ApiError(
                    403, "exportSizeLimitExceeded", "This file is too large to be exported."
                )
            self._send_body(data, target, 200, {}, fault)

    def _authorize(self, query: dict[str, str]) -> None:
        emu = self.server.emulator
        header = self.headers.get("Authorization")
        token: str | None = query.get("access_token")
        if header is not None:
            scheme, _, value = header.partition(" ")
            token = value.strip() if scheme.lower() == "bearer" else ""
        key = query.get("key")
        if token is None and key is None:
            raise ApiError(403, "forbidden", "The request is missing a valid API key.")
        if token is not None and (
            not token or (emu.tokens is not None and token not in emu.tokens)
        ):
            error = ApiError(401, "authError", _INVALID_CREDENTIALS, location="Authorization")
            error.location_type = "header"
            error.headers = {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'}
            raise error
        if key is not None and (not key or (emu.api_keys is not None and key not in emu.api_keys)):
            raise ApiError(400, "keyInvalid", "API key not valid. Please pass a valid API key.")

    # ---- responses ------------------------------------------------------------------------
    def _send_json(self, body: dict[str, Any], params: Params | None = None) -> None:
        pretty = params is None or params.raw.get("prettyPrint", "true").lower() != "false"
        data = json.dumps(body, indent=2 if pretty else None, ensure_ascii=False).encode()
        self._send_body(data, "application/json; charset=UTF-8", 200, {}, None)

    def _send_error(self, error: ApiError) -> None:
        data = json.dumps(error.body(), indent=2).encode()
        self._send_body(
            data, "application/json; charset=UTF-8", error.code, error.headers or {}, None
        )

    def _send_body(
        self,
        data: bytes,
        content_type: str,
        status: int,
        headers: dict[str, str],
        fault: str | None,
    ) -> None:
        self._stream(io.BytesIO(data), len(data), content_type, status, headers, fault)

    def _send_media(self, entry: Entry, fault: str | None) -> None:
        emu = self.server.emulator
        if entry.kind != "binary":
            raise ApiError(
                403,
                "fileNotDownloadable",
                "Only files with binary content can be downloaded. Use Export with Docs Editors "
                "files.",
                location="alt",
            )
        if not entry.can_download:
            raise ApiError(403, "cannotDownloadFile", "The user cannot download this file.")
        with (emu.tree.root / entry.relpath).open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            span = _parse_range(self.headers.get("Range"), size)
            headers = {"Accept-Ranges": "bytes"}
            if span is None:
                self._stream(fh, size, entry.mime_type, 200, headers, fault)
                return
            start, end = span
            fh.seek(start)
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            self._stream(fh, end - start + 1, entry.mime_type, 206, headers, fault)

    def _stream(
        self,
        source: BinaryIO,
        length: int,
        content_type: str,
        status: int,
        headers: dict[str, str],
        fault: str | None,
    ) -> None:
        """Send status, headers and `length` bytes of `source`, applying a media fault."""
        emu = self.server.emulator
        emu.stats.count_status(status)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        limit = length
        if fault == "truncate" and length > 0:
            limit = length // 2  # then close: the client sees a short read
        flips = set(emu.faults.corrupt_offsets(length)) if fault == "corrupt" else set()
        bandwidth = emu.faults.config.bandwidth_bps if status in (200, 206) else None
        chunk_size = CHUNK if bandwidth is None else max(1024, min(CHUNK, int(bandwidth / 20)))
        started, sent = time.monotonic(), 0
        if not flips and not bandwidth and _is_real_file(source):
            # Plain bytes from disk: let the kernel copy them (a real server isn't CPU-bound
            # here, so neither should the emulator be when benchmarks measure the client).
            sent = self.connection.sendfile(source, offset=source.tell(), count=limit)
        while sent < limit:
            chunk = source.read(min(chunk_size, limit - sent))
            if not chunk:
                break
            if flips:
                chunk = _flip(chunk, sent, flips)
            if bandwidth:  # wait until this chunk is due, so the last byte lands on time
                due = (sent + len(chunk)) / bandwidth - (time.monotonic() - started)
                if due > 0:
                    time.sleep(due)
            self.wfile.write(chunk)
            sent += len(chunk)
        emu.stats.add_bytes(sent)
        if sent < length:
            self.wfile.flush()
            self.close_connection = True

    def _reset_connection(self) -> None:
        """Drop the connection with a TCP reset and no response."""
        self.close_connection = True
        self._drain_body()
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass

    def _json_body(self) -> Any:
        """The POST's JSON body, read by ``do_POST`` (400 ``parseError`` if it is not JSON)."""
        try:
            return json.loads(getattr(self, "_body", b"") or b"null")
        except ValueError:
            raise ApiError(400, "parseError", "Parse Error") from None

    def _drain_body(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)


def _route(path: str) -> tuple[str | None, str]:
    """(method id, file id) for a request path; method None if nothing serves it."""
    if not path.startswith(SERVICE_PREFIX):
        return None, ""
    parts = path[len(SERVICE_PREFIX) :].split("/")
    if parts == ["files"]:
        return "drive.files.list", ""
    if len(parts) == 1 and parts[0] in _SINGLE_ROUTES:
        return _SINGLE_ROUTES[parts[0]], ""
    if parts == ["changes", "startPageToken"]:
        return "drive.changes.getStartPageToken", ""
    if parts == ["changes", "watch"]:
        return "drive.changes.watch", ""
    if parts == ["channels", "stop"]:
        return "drive.channels.stop", ""
    if len(parts) == 2 and parts[0] == "files" and parts[1]:
        return "drive.files.get", unquote(parts[1])
    if len(parts) == 3 and parts[0] == "files" and parts[1] and parts[2] == "export":
        return "drive.files.export", unquote(parts[1])
    return None, ""


def _parents_in(q: str) -> list[str]:
    """The folder ids a query lists children of: each ``'<id>' in parents`` term."""
    return [m.group(1).replace("\\'", "'") for m in _PARENTS_TERM.finditer(q)]


def _endpoint_name(method: str | None, query: dict[str, str]) -> str:
    if method == "drive.files.list":
        return "list"
    if method == "drive.files.get":
        return "media" if query.get("alt") == "media" else "get"
    if method == "drive.files.export":
        return "export"
    return _ENDPOINTS.get(method or "", "unknown")


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end) inclusive for a single-range header, None for the whole body.

    Malformed or multi-range headers are ignored (whole body), as RFC 9110 allows; a range
    that cannot be satisfied raises 416.
    """
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if not match or not (match.group(1) or match.group(2)):
        return None
    first, last = match.group(1), match.group(2)
    if first:
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
        if last and int(last) < start:
            return None
    else:
        start, end = max(0, size - int(last)), size - 1
        if int(last) == 0:
            start = size
    if start >= size or size == 0:
        error = ApiError(416, "requestedRangeNotSatisfiable", "Request range not satisfiable")
        error.headers = {"Content-Range": f"bytes */{size}"}
        raise error
    return start, end


def _is_real_file(source: BinaryIO) -> bool:
    try:
        source.fileno()
    except (OSError, AttributeError, io.UnsupportedOperation):
        return False
    return True


def _flip(chunk: bytes, offset: int, flips: set[int]) -> bytes:
    data = bytearray(chunk)
    for position in flips:
        if offset <= position < offset + len(data):
            data[position - offset] ^= 0xFF
    return bytes(data)
