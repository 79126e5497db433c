"""A small threaded TCP proxy on 127.0.0.1 that fails on command, to break a storage server mid-run.

moto_server and gcp-storage-emulator keep their data in memory, so stopping them loses every
bucket. Put this proxy in front instead and point the client at ``proxy.url``:

    with FaultProxy("127.0.0.1", moto.port) as proxy:
        proxy.set_mode("reset")   # every open and new connection is reset (RST)
        proxy.set_mode("pass")    # forward again

Modes: ``pass`` forwards bytes both ways; ``reset`` aborts open connections and resets new
ones at once; ``refuse`` stops listening, so connects are refused (ECONNREFUSED).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from types import TracebackType
from typing import Literal

Mode = Literal["pass", "reset", "refuse"]
HOST = "127.0.0.1"
_CHUNK = 64 * 1024


def _abort(sock: socket.socket) -> None:
    """Close with SO_LINGER 0, so the peer sees a connection reset rather than a clean EOF."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class FaultProxy:
    """Forward ``127.0.0.1:<port>`` to ``target_host:target_port`` until told to fail."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.mode: Mode = "pass"
        self.port = 0
        self.connections = 0
        self.resets = 0
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``: the endpoint clients should use."""
        return f"http://{HOST}:{self.port}"

    def start(self) -> FaultProxy:
        """Listen on a free port (kept across ``refuse`` so the URL stays the same)."""
        self._listen()
        return self

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((HOST, self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        thread.start()
        self._threads.append(thread)

    def set_mode(self, mode: Mode) -> None:
        """Switch behaviour; ``reset`` and ``refuse`` also abort every open connection."""
        with self._lock:
            previous, self.mode = self.mode, mode
            doomed = list(self._open) if mode != "pass" else []
            self._open.difference_update(doomed)
        for sock in doomed:
            self.resets += 1
            _abort(sock)
        if mode == "refuse" and self._listener is not None:
            listener, self._listener = self._listener, None
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        elif previous == "refuse" and mode != "refuse":
            self._listen()

    def stop(self) -> None:
        """Stop listening and close every connection."""
        self.set_mode("refuse")
        for thread in self._threads:
            thread.join(timeout=2)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # the listener was closed
            self.connections += 1
            if self.mode != "pass":
                self.resets += 1
                _abort(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _abort(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open.update((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(_CHUNK)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
        with self._lock:
            self._open.discard(src)
        with contextlib.suppress(OSError):
            src.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
