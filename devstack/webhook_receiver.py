"""A loopback webhook receiver: stands in for a Slack incoming webhook on 127.0.0.1.

It answers each POST with the next status of ``statuses`` (then 200), records every body it
accepted or refused, and calls ``on_message`` for each accepted one (the demo prints them).
The URL carries a secret-looking path, as Slack's does (``/services/T…/B…/<token>``), so tests
can check that the token never reaches a log.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    """One POST: its status, path and JSON body (None when the body was not JSON), and its
    headers (a Drive notification is nothing but headers)."""

    status: int
    path: str
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class WebhookReceiver:
    """``with WebhookReceiver([500, 500]) as hook: ... hook.url ... hook.accepted``."""

    def __init__(
        self,
        statuses: Iterable[int] = (),
        *,
        on_message: Callable[[Any], None] | None = None,
        token: str | None = None,
    ) -> None:
        self.token = token or f"tok-{secrets.token_hex(12)}"
        self.path = f"/services/T0LOCAL/B0LOCAL/{self.token}"
        self.received: list[Received] = []
        self._statuses = list(statuses)
        self._on_message = on_message
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The webhook URL (a secret, like Slack's)."""
        return f"http://127.0.0.1:{self._server.server_address[1]}{self.path}"

    @property
    def accepted(self) -> list[Any]:
        """The bodies answered with a 2xx."""
        return [r.body for r in self.received if 200 <= r.status < 300]

    def __enter__(self) -> WebhookReceiver:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _next(self, path: str, body: Any, headers: dict[str, str] | None = None) -> int:
        with self._lock:
            status = (
                404 if path != self.path else (self._statuses.pop(0) if self._statuses else 200)
            )
            self.received.append(Received(status, path, body, dict(headers or {})))
        if 200 <= status < 300 and self._on_message is not None:
            self._on_message(body)
        return status

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                status = receiver._next(self.path, body, dict(self.headers.items()))
                answer = b"ok" if 200 <= status < 300 else b"error"
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler
