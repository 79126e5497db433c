"""A webhook receiver on 127.0.0.1 that records every POST, for the notification tests."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    """One request the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def state(self) -> str:
        """``X-Goog-Resource-State``."""
        return self.headers.get("X-Goog-Resource-State", "")

    @property
    def number(self) -> int:
        """``X-Goog-Message-Number``."""
        return int(self.headers.get("X-Goog-Message-Number", "0"))


class Recorder:
    """Records POSTs and answers them with ``statuses`` in turn (then 200)."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.received: list[Received] = []
        self.statuses = list(statuses or [])
        self._cond = threading.Condition()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with recorder._cond:
                    recorder.received.append(Received(self.path, dict(self.headers), body))
                    status = recorder.statuses.pop(0) if recorder.statuses else 200
                    recorder._cond.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The address to give changes.watch."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/drive/notifications"

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        """Block until ``count`` requests arrived (AssertionError after ``timeout``)."""
        with self._cond:
            arrived = self._cond.wait_for(lambda: len(self.received) >= count, timeout=timeout)
            assert arrived, f"{len(self.received)} of {count} notifications after {timeout}s"
            return list(self.received)

    def __enter__(self) -> Recorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
