"""``drivepipe watch start|stop|status``, and the settings push is configured with."""

from __future__ import annotations

import json
import textwrap
import time

import pytest

from shared.cli import EXIT_FAILED_INPUTS, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, main
from shared.config import parse_config
from shared.errors import ConfigError
from shared.run.lease import Lease
from shared.settings import runtime_settings
from shared.storage import layout, open_storage
from tests.push.conftest import PushSetup


def watch(setup: PushSetup, *args: str) -> int:
    setup.clock.now = time.time()  # the CLI runs on the wall clock
    return main(["watch", *args, "--config", str(setup.config), "--pipeline", "sales"])


def test_start_status_stop(push_setup: PushSetup, capsys: pytest.CaptureFixture[str]) -> None:
    assert watch(push_setup, "start") == EXIT_OK
    opened = capsys.readouterr().out
    assert "sales: opened drivepipe-" in opened
    assert watch(push_setup, "start", "--json") == EXIT_OK
    assert json.loads(capsys.readouterr().out)["action"] == "kept"
    assert watch(push_setup, "status") == EXIT_OK
    text = capsys.readouterr().out
    (token_file,) = push_setup.secrets.iterdir()
    assert "token     dir:" in text and token_file.read_text() not in text
    assert "next      nothing due" in text and "sync owed no" in text
    assert watch(push_setup, "status", "--json") == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    assert report["channel"]["address"].endswith("/drive/notifications")
    assert report["channel"]["expires_in_hours"] == pytest.approx(168, abs=0.1)
    assert watch(push_setup, "stop") == EXIT_OK
    assert "stopped 1 channel(s)" in capsys.readouterr().out
    assert push_setup.drive.watch.open_channels() == []
    assert watch(push_setup, "status", "--json") == EXIT_OK
    assert json.loads(capsys.readouterr().out)["due"]["action"] == "opened"


def test_exit_codes(
    push_setup: PushSetup, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    held = Lease(open_storage(str(push_setup.output)), layout.channel_lock("sales"), ttl=60)
    assert held.try_acquire() is not None
    assert watch(push_setup, "start") == EXIT_FAILED_INPUTS  # another process is at it
    held.release()
    monkeypatch.setenv("DRIVEPIPE_CHANNEL_SECRETS", "gcp-sm:projects/p")
    monkeypatch.setenv("SECRET_MANAGER_EMULATOR_HOST", "127.0.0.1:9")  # nothing listens
    assert watch(push_setup, "start") == EXIT_UNREACHABLE
    monkeypatch.setenv("DRIVEPIPE_PUSH_ADDRESS", "http://example.com/hook")
    assert watch(push_setup, "start") == EXIT_USAGE
    assert "https://" in capsys.readouterr().err


def test_push_needs_the_feed_and_the_schedule() -> None:
    def pipeline(**fields: object) -> dict[str, object]:
        return {"pipelines": {"p": {"output": {"url": "/tmp/x"}, "push": True, **fields}}}

    with pytest.raises(ConfigError, match=r"pipelines\.p: push = true needs source\.changes"):
        parse_config(pipeline(scheduled=True))
    with pytest.raises(ConfigError, match="push = true needs scheduled = true"):
        parse_config(pipeline(source={"changes_feed": True}))
    ok = parse_config(pipeline(scheduled=True, source={"changes_feed": True}))
    assert ok.pipelines["p"].push is True
    shipped = textwrap.dedent(
        """
        [pipelines.p]
        scheduled = true
        push = "${PUSH_FLAG:-false}"
        source = { changes_feed = "${PUSH_FLAG:-false}" }
        output = { url = "/tmp/x" }
        """
    )
    import tomllib

    assert parse_config(tomllib.loads(shipped)).pipelines["p"].push is False


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DRIVEPIPE_PUSH_ADDRESS", "ftp://x", "https://"),
        ("DRIVEPIPE_CHANNEL_SECRETS", "vault:x", "aws-sm:PREFIX"),
        ("DRIVEPIPE_CHANNEL_HOURS", "200", "less than or equal to 168"),
        ("DRIVEPIPE_PUSH_SETTLE_SECONDS", "-1", "greater than or equal to 0"),
    ],
)
def test_bad_push_settings_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=name) as caught:
        runtime_settings({name: value})
    assert message in str(caught.value)
