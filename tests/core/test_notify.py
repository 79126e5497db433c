"""Notifications: when, what, retries with backoff, outcomes in the manifest, no secret in logs.

The webhook is a real HTTP server on 127.0.0.1 (:class:`devstack.webhook_receiver`); sleeping
between tries goes through an injected ``sleep`` that records the waits instead.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.webhook_receiver import WebhookReceiver
from shared import log
from shared.config import parse_config
from shared.errors import ConfigError
from shared.run.finish import finish_run
from shared.run.manifest import InputRecord, RunManifest
from shared.run.notify.deliver import notify_run, with_retries
from shared.run.notify.message import reasons, run_event, slack_body, text_body
from shared.run.notify.options import NotifyOptions
from shared.run.notify.targets import SendFailed
from shared.storage import Storage, open_storage
from shared.storage.layout import run_key

HOOK_ENV = "TEST_DRIVEPIPE_WEBHOOK"


def a_run(*, failed: bool = True, blocked: bool = False) -> RunManifest:
    inputs = [InputRecord(source_id="1", path="sales/q1.csv", status="written", rows_out=3)]
    if failed:
        inputs.append(
            InputRecord(
                source_id="2",
                path="broken/bad.csv",
                status="failed",
                error="ReadError: row 3 has 4 fields, expected 3",
                quarantine_key="_quarantine/20260301T120000Z-00000001/broken/bad.csv",
            )
        )
    return RunManifest(
        run_id="20260301T120000Z-00000001",
        pipeline="sales",
        trigger="schedule",
        source="folder",
        destination="lake",
        inputs=inputs,
        removals_blocked="7 inputs gone, more than mirror.max_removed=5" if blocked else None,
    )


@pytest.fixture
def dest(tmp_path: Path) -> Storage:
    return open_storage(str(tmp_path / "lake"))


def webhook(**kwargs: object) -> NotifyOptions:
    return NotifyOptions.model_validate({"webhook_url_env": HOOK_ENV, **kwargs})


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def test_when_a_run_is_worth_a_message() -> None:
    default = NotifyOptions(sns_topic="arn:aws:sns:us-east-1:123456789012:t")
    assert reasons(a_run(), default) == ["failed", "quarantined"]
    assert reasons(a_run(failed=False), default) == []
    assert reasons(a_run(failed=False, blocked=True), default) == ["removal_blocked"]
    always = default.model_copy(update={"on": ("always",)})
    assert reasons(a_run(failed=False), always) == ["always"]


def test_the_message_names_run_pipeline_trigger_counts_failures_and_manifest(
    dest: Storage,
) -> None:
    manifest = a_run()
    event = run_event(dest, manifest, ["failed"])
    assert event["run_id"] == manifest.run_id and event["pipeline"] == "sales"
    assert event["trigger"] == "schedule" and event["counts"] == {"written": 1, "failed": 1}
    [failed] = event["failed"]
    assert failed["path"] == "broken/bad.csv" and "row 3 has 4 fields" in failed["reason"]
    assert failed["quarantine_url"] == dest.url(failed["quarantine_key"])
    assert event["manifest"] == dest.url(run_key(manifest.run_id))
    text = text_body(event)
    for part in ("broken/bad.csv", "row 3 has 4 fields", failed["quarantine_url"], "manifest:"):
        assert part in text
    slack = slack_body(event)
    assert "1 input failed" in slack["text"]
    rendered = json.dumps(slack["blocks"])
    assert "broken/bad.csv" in rendered and event["manifest"] in rendered


def test_a_webhook_that_fails_twice_gets_one_message_and_the_run_succeeds(
    dest: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    sleeps = Sleeps()
    with WebhookReceiver([500, 500]) as hook:
        monkeypatch.setenv(HOOK_ENV, hook.url)
        manifest = a_run()
        finish_run(dest, manifest, notify=webhook(), sleep=sleeps)
    assert [r.status for r in hook.received] == [500, 500, 200]
    [body] = hook.accepted
    assert "broken/bad.csv" in json.dumps(body)
    assert sleeps == [1.0, 2.0]  # backoff: 1 s, then 2 s
    stored = json.loads(dest.read(run_key(manifest.run_id)))
    [outcome] = stored["notifications"]
    assert outcome["ok"] and outcome["attempts"] == 3 and outcome["target"] == "webhook"
    assert outcome["to"] == f"env {HOOK_ENV}"
    assert hook.token not in json.dumps(stored)


def test_a_webhook_that_keeps_failing_is_recorded_and_never_fails_the_run(
    dest: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    with WebhookReceiver([503] * 10) as hook:
        monkeypatch.setenv(HOOK_ENV, hook.url)
        manifest = a_run()
        finish_run(dest, manifest, notify=webhook(retries=2), sleep=Sleeps())
    assert len(hook.received) == 3
    [outcome] = json.loads(dest.read(run_key(manifest.run_id)))["notifications"]
    assert not outcome["ok"] and outcome["error"] == "webhook answered HTTP 503"


def test_a_refusal_is_not_retried_and_a_missing_url_is_reported(
    dest: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    sleeps = Sleeps()
    with WebhookReceiver([400]) as hook:
        monkeypatch.setenv(HOOK_ENV, hook.url)
        [refused] = notify_run(dest, a_run(), webhook(), sleep=sleeps)
    assert (refused.ok, refused.attempts, sleeps) == (False, 1, [])
    monkeypatch.delenv(HOOK_ENV)
    [missing] = notify_run(dest, a_run(), webhook(), sleep=sleeps)
    assert missing.error == f"environment variable {HOOK_ENV} is not set" and sleeps == []


def test_a_clean_run_with_on_failed_sends_nothing(
    dest: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    with WebhookReceiver() as hook:
        monkeypatch.setenv(HOOK_ENV, hook.url)
        manifest = a_run(failed=False)
        finish_run(dest, manifest, notify=webhook(on=["failed"]), sleep=Sleeps())
    assert hook.received == []
    assert json.loads(dest.read(run_key(manifest.run_id)))["notifications"] == []


def test_backoff_is_exponential_and_capped() -> None:
    sleeps = Sleeps()

    def always_busy() -> None:
        raise SendFailed("busy", retryable=True)

    tries, _, failure = with_retries(always_busy, 6, base=1.0, sleep=sleeps)
    assert tries == 7 and failure is not None
    assert sleeps == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


@pytest.fixture
def debug_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """Every log line at DEBUG, third-party loggers included, as a Lambda root handler sees it."""
    monkeypatch.setenv(log.THIRD_PARTY_ENV, "debug")
    root = logging.getLogger()
    sink = io.StringIO()
    handler = logging.StreamHandler(sink)
    handler.setFormatter(log.JsonFormatter())
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    log.configure("DEBUG", json_lines=True)
    drivepipe = logging.getLogger("drivepipe")
    drivepipe.handlers.append(handler)
    yield sink
    drivepipe.handlers.remove(handler)
    root.removeHandler(handler)
    root.setLevel(old_level)


def test_the_webhook_secret_never_reaches_a_log_at_debug(
    dest: Storage,
    monkeypatch: pytest.MonkeyPatch,
    debug_logs: io.StringIO,
    capfd: pytest.CaptureFixture[str],
) -> None:
    with WebhookReceiver([500, 429]) as hook:
        monkeypatch.setenv(HOOK_ENV, hook.url)
        finish_run(dest, a_run(), notify=webhook(), sleep=Sleeps())
        closed = hook.url  # after the server stops: connection refused, logged by urllib3
    monkeypatch.setenv(HOOK_ENV, closed)
    notify_run(dest, a_run(), webhook(retries=1), sleep=Sleeps())
    logged = debug_logs.getvalue() + "".join(capfd.readouterr())
    assert "urllib3" in logged and "notification" in logged  # the loggers did speak at DEBUG
    assert hook.token not in logged
    assert hook.path not in logged
    assert "POST *** HTTP/1.1" in logged  # urllib3's request line, with the path masked


def test_notify_options_are_validated_at_load_naming_the_field() -> None:
    base = {"pipelines": {"a": {"output": {"url": "/tmp/x"}}}}
    with pytest.raises(ConfigError, match=r"settings\.notify\.on\[0\]"):
        parse_config({**base, "settings": {"notify": {"on": ["sometimes"], "sns_topic": ""}}})
    with pytest.raises(ConfigError, match=r"pipelines\.a\.notify: .*names no target"):
        parse_config({"pipelines": {"a": {"output": {"url": "/x"}, "notify": {}}}})
    with pytest.raises(ConfigError, match=r"notify\.sns_topic"):
        parse_config({**base, "settings": {"notify": {"sns_topic": "my-topic"}}})
    with pytest.raises(ConfigError, match=r"notify\.webhook_url_env"):
        parse_config({**base, "settings": {"notify": {"webhook_url_env": "https://hooks/x"}}})
    with pytest.raises(ConfigError, match="not both"):
        parse_config(
            {**base, "settings": {"notify": {"webhook_url_env": "A", "webhook_secret": "s"}}}
        )
    cfg = parse_config(
        {
            "settings": {"notify": {"webhook_url_env": "HOOK"}},
            "pipelines": {
                "a": {"output": {"url": "/x"}},
                "b": {"output": {"url": "/y"}, "notify": {"on": []}},
                "c": {"output": {"url": "/z"}, "notify": {"sns_topic": ""}},  # ${VAR:-} unset
            },
        }
    )
    assert cfg.pipelines["a"].notify == NotifyOptions(webhook_url_env="HOOK")
    assert cfg.pipelines["b"].notify is not None and cfg.pipelines["b"].notify.on == ()
    assert cfg.pipelines["c"].notify is not None and cfg.pipelines["c"].notify.targets == []


def test_the_webhook_url_can_live_in_secrets_manager(
    dest: Storage, moto_server: object, s3_env: dict[str, str]
) -> None:
    """``webhook_secret``: read from Secrets Manager on moto_server (the real boto3 client)."""
    import boto3

    with WebhookReceiver() as hook:
        client = boto3.client("secretsmanager", region_name="us-east-1")
        name = f"drivepipe/test/webhook-{hook.token[-6:]}"
        arn = client.create_secret(Name=name, SecretString=json.dumps({"url": hook.url}))["ARN"]
        options = NotifyOptions(webhook_secret=arn)
        [sent] = notify_run(dest, a_run(), options, sleep=Sleeps())
    assert sent.ok and sent.to == f"secret {arn}" and len(hook.accepted) == 1
    assert hook.token not in json.dumps(sent.to_dict())
