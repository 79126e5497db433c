"""The webhook on the emulator's real notifications: what it accepts, refuses, and never says."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from shared.errors import RetryableError
from shared.run import channels, pending, push_queue
from shared.run.sync import SyncRequest, run_sync
from shared.storage import open_storage
from shared.triggers import push
from tests.drive_emulator.webhook import Recorder
from tests.push.conftest import PushSetup, headers_of


def open_channel(setup: PushSetup) -> channels.Channel:
    watcher = channels.Watcher(
        setup.pipeline, open_storage(str(setup.output)), drive=_drive(), clock=setup.clock
    )
    outcome = channels.start(watcher)
    assert outcome.action == "opened", outcome
    record = channels.ChannelRecord.load(open_storage(str(setup.output)), "sales")
    assert record.current is not None
    return record.current


def _drive():  # type: ignore[no-untyped-def]
    from shared.drive import DriveClient

    return DriveClient.from_env()


def token_of(setup: PushSetup) -> str:
    (path,) = setup.secrets.iterdir()
    return path.read_text()


def test_sync_then_change_is_accepted_and_handed_off(
    push_setup: PushSetup, recorder: Recorder
) -> None:
    open_channel(push_setup)
    sync = recorder.wait_for(1)[0]
    answer = push.webhook("POST", sync.headers, sync.body)
    assert (answer.status, answer.body["status"]) == (200, "ok")
    assert push_setup.handed_off == []  # a sync message is no work

    push_setup.write("sales/q2.csv", "order_id,units\n3,1\n")
    push_setup.drive.poll_changes()
    change = recorder.wait_for(2)[1]
    assert change.state == "change"
    answer = push.webhook("POST", change.headers, change.body)
    assert (answer.status, answer.body["status"]) == (200, "accepted")
    assert [m.pipeline for m in push_setup.handed_off] == ["sales"]
    assert pending.owed(open_storage(str(push_setup.output)), "sales") is not None


def test_a_replayed_or_late_message_number_changes_nothing(
    push_setup: PushSetup, recorder: Recorder
) -> None:
    open_channel(push_setup)
    push_setup.write("sales/q2.csv", "order_id,units\n3,1\n", stamp=1_800_000_001)
    push_setup.drive.poll_changes()
    push_setup.write("sales/q2.csv", "order_id,units\n3,2\n", stamp=1_800_000_002)
    push_setup.drive.poll_changes()
    first, second = recorder.wait_for(3)[1:]
    assert push.webhook("POST", second.headers, b"").body["status"] == "accepted"
    dest = open_storage(str(push_setup.output))
    before = pending.requested(dest, "sales")
    run_sync(SyncRequest(push_setup.pipeline, trigger="push"))  # the owed sync ran
    assert pending.owed(dest, "sales") is None
    for replay in (second, first):  # the same number again, then an older one
        answer = push.webhook("POST", replay.headers, b"")
        assert (answer.status, answer.body["status"]) == (200, "duplicate")
    assert len(push_setup.handed_off) == 1  # nothing owed: nothing handed off again
    assert pending.requested(dest, "sales") == before
    assert pending.owed(dest, "sales") is None


def test_a_notification_drive_retries_after_a_503_is_handed_off(
    push_setup: PushSetup, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    open_channel(push_setup)
    push_setup.write("sales/q2.csv", "order_id,units\n3,1\n")
    push_setup.drive.poll_changes()
    change = recorder.wait_for(2)[1]

    def queue_down(message: push_queue.PushMessage) -> bool:
        raise RetryableError("SQS is not reachable")

    with monkeypatch.context() as patch:
        patch.setattr(push_queue, "hand_off", queue_down)
        assert push.webhook("POST", change.headers, b"").status == 503  # Drive retries it
    retried = push.webhook("POST", change.headers, b"")
    assert (retried.status, retried.body["status"]) == (200, "duplicate")
    assert [m.pipeline for m in push_setup.handed_off] == ["sales"]  # handed off this time


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"X-Goog-Channel-Token": "not-the-token"}, 403),
        ({"X-Goog-Channel-ID": "drivepipe-" + "0" * 32}, 403),
        ({"X-Goog-Channel-ID": "someone-elses-channel"}, 403),
        ({"X-Goog-Resource-ID": "another-resource"}, 403),
        ({"X-Goog-Message-Number": "seven"}, 400),
        ({"X-Goog-Channel-Token": ""}, 400),
    ],
    ids=["wrong-token", "unknown-channel", "foreign-id", "wrong-res", "bad-number", "no-token"],
)
def test_refused_notifications_do_no_work(
    push_setup: PushSetup, recorder: Recorder, change: dict[str, str], status: int
) -> None:
    open_channel(push_setup)
    push_setup.write("sales/q2.csv", "order_id,units\n3,1\n")
    push_setup.drive.poll_changes()
    real = recorder.wait_for(2)[1]
    answer = push.webhook("POST", headers_of(real, **change), b"")
    assert answer.status == status and "error" in answer.body
    assert push_setup.handed_off == []
    assert pending.requested(open_storage(str(push_setup.output)), "sales") is None


def test_missing_headers_a_big_body_and_a_get(push_setup: PushSetup, recorder: Recorder) -> None:
    open_channel(push_setup)
    sync = recorder.wait_for(1)[0]
    headers = headers_of(sync)
    del headers["X-Goog-Resource-State"]
    assert push.webhook("POST", headers, b"").status == 400
    big = b"x" * (push.MAX_BODY_BYTES + 1)
    assert push.webhook("POST", headers_of(sync), big).status == 413
    declared = headers_of(sync, **{"Content-Length": str(10**9)})
    assert push.webhook("POST", declared, b"").status == 413
    assert push.webhook("GET", headers_of(sync), b"").status == 405
    assert push_setup.handed_off == []


def test_the_token_is_never_logged_answered_or_stored(
    push_setup: PushSetup, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    open_channel(push_setup)
    token = token_of(push_setup)
    push_setup.write("sales/q2.csv", "order_id,units\n3,1\n")
    push_setup.drive.poll_changes()
    sync, change = recorder.wait_for(2)
    answers = [
        push.webhook("POST", sync.headers, b""),
        push.webhook("POST", change.headers, b""),
        push.webhook("POST", headers_of(change, **{"X-Goog-Message-Number": "999"}), b""),
        push.webhook("POST", headers_of(change, **{"X-Goog-Channel-Token": token + "x"}), b""),
    ]
    assert [a.status for a in answers] == [200, 200, 200, 403]
    assert all(token not in json.dumps(a.body) for a in answers)
    assert token not in caplog.text and "x-goog-channel-token" not in caplog.text.lower()
    stored = [p for p in Path(push_setup.output).rglob("*") if p.is_file()]
    assert stored  # the channel record and the request are there...
    assert all(token.encode() not in p.read_bytes() for p in stored)  # ...without the token
