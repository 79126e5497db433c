"""devstack launchers: start, answer, stop without orphans, fail loudly with the log tail."""

from __future__ import annotations

import os
import socket
import sys

import pytest

from devstack.servers import (
    GcsEmulator,
    LocalServer,
    MotoServer,
    ServerStartError,
    free_port,
    wait_for_port,
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class _ExitingServer(LocalServer):
    name = "exits-at-once"
    start_attempts = 1

    def command(self) -> list[str]:
        script = "import sys; print('boom-marker', file=sys.stderr); sys.exit(3)"
        return [sys.executable, "-c", script]


class _SilentServer(LocalServer):
    """Runs but never listens: start() must time out and leave no process behind."""

    name = "never-listens"
    start_attempts = 1

    def command(self) -> list[str]:
        script = (
            "import os, time; print(f'still-booting pid={os.getpid()}', flush=True); time.sleep(60)"
        )
        return [sys.executable, "-c", script]


def test_free_port_is_bindable_and_not_handed_out_again_while_held() -> None:
    port = free_port()
    assert 1024 <= port <= 65535
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", port))  # free: binding it succeeds
        held.listen()
        assert held.getsockname() == ("127.0.0.1", port)
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # and it is the port a client reaches
        second = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        with second, pytest.raises(OSError):
            second.bind(("127.0.0.1", port))  # held now: a second bind is refused
        assert free_port() != port  # so a second launcher gets another port


def test_wait_for_port_times_out_on_a_closed_port() -> None:
    with pytest.raises(TimeoutError, match="nothing listening"):
        wait_for_port("127.0.0.1", free_port(), timeout=0.3)


@pytest.mark.parametrize("server_class", [MotoServer, GcsEmulator])
def test_server_starts_answers_and_stops_without_orphans(server_class: type[LocalServer]) -> None:
    server = server_class()
    with server:
        assert server.running
        assert server.startup_seconds is not None and server.startup_seconds > 0
        wait_for_port("127.0.0.1", server.port, timeout=1)
        pid = server._process.pid  # type: ignore[union-attr]
        server.create_bucket("launcher-check")  # type: ignore[attr-defined]
    assert not server.running
    assert not _alive(pid)
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", server.port), timeout=1):
        pass
    server.stop()  # stopping twice is harmless


def test_start_failure_reports_the_log_tail() -> None:
    with pytest.raises(ServerStartError, match="boom-marker") as caught:
        _ExitingServer().start()
    assert "exited with code 3" in str(caught.value)


def test_start_timeout_kills_the_process_and_reports_output() -> None:
    server = _SilentServer(start_timeout=1.0)
    with pytest.raises(ServerStartError, match="still-booting") as caught:
        server.start()
    assert not server.running
    pid = int(str(caught.value).split("pid=")[1].split()[0])
    assert not _alive(pid)


def test_env_points_clients_at_the_server(
    moto_server: MotoServer, gcs_emulator: GcsEmulator
) -> None:
    assert moto_server.env()["AWS_ENDPOINT_URL"] == moto_server.url
    assert gcs_emulator.env() == {
        "STORAGE_EMULATOR_HOST": gcs_emulator.url,
        "GOOGLE_CLOUD_PROJECT": "local",
    }
