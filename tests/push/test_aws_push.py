"""End to end on the AWS local path: the emulator's real notifications reach ``chalice local``,
which hands off to SQS; the push worker syncs; the schedule renews and reconciles."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import requests

from devstack.servers import MotoServer
from shared.storage import layout
from tests.push.aws_stack import AwsPush, aws_push_stack, wait_for


def key(path: str) -> str:
    """Where the table layout puts the output of Drive file ``path`` (no extension) under the
    destination prefix ``sales/``: the pipeline's table ``sales``, folders joined by ``__``."""
    return f"sales/{layout.table_output_key('sales', path, '.parquet')}"


pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def aws(moto_server: MotoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AwsPush]:
    tmp = tmp_path_factory.mktemp("aws-push")
    with aws_push_stack(moto_server, tmp, suffix=tmp.name.lower()[-12:].strip("-_")) as stack:
        stack.settle()
        yield stack


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Per-test settings for the in-process app (the webhook's process keeps its own)."""
    from shared.settings import _load

    _load.cache_clear()
    yield monkeypatch
    monkeypatch.undo()
    _load.cache_clear()


def test_an_edit_a_move_and_a_delete_reach_the_lake(aws: AwsPush) -> None:
    schedules = len(aws.runs("schedule"))
    aws.write("push/a.csv", "Region,Units\nnorth,1\n")
    wait_for(lambda: key("push/a") in aws.data_keys(), "the new file's output")
    aws.write("push/a.csv", "Region,Units\nnorth,1\nsouth,2\n")
    wait_for(lambda: len(aws.frame(key("push/a"))) == 2, "the edit")
    (aws.root / "push" / "moved").mkdir()
    os.rename(aws.root / "push" / "a.csv", aws.root / "push" / "moved" / "a.csv")
    moved = key("push/moved/a")
    wait_for(
        lambda: moved in (keys := aws.data_keys()) and key("push/a") not in keys,
        "the move (new key written, old one gone)",
    )
    assert len(aws.frame(moved)) == 2
    (aws.root / "push" / "moved" / "a.csv").unlink()
    wait_for(lambda: moved not in aws.data_keys(), "the delete")
    aws.settle()
    assert len(aws.runs("schedule")) == schedules  # push alone did it
    statuses = {rec["status"] for run in aws.runs("push") for rec in run["inputs"]}
    assert {"written", "moved", "removed"} <= statuses


def test_a_burst_of_50_notifications_makes_at_most_two_syncs(aws: AwsPush) -> None:
    aws.settle()
    before = len(aws.runs("push"))
    sent_before = len(aws.drive.watch.sent("change"))
    for n in range(50):
        aws.write(f"burst/f{n:02d}.csv", f"Region,Units\nnorth,{n}\n")
    aws.drive.poll_changes()
    wanted = {key(f"burst/f{n:02d}") for n in range(50)}
    wait_for(lambda: wanted <= aws.data_keys(), "all 50 outputs")
    aws.settle()
    delivered = aws.drive.watch.sent("change")[sent_before:]
    assert len(delivered) >= 50 and {d.status for d in delivered} == {200}
    syncs = len(aws.runs("push")) - before
    assert 1 <= syncs <= 2, syncs


def test_forged_unknown_and_replayed_notifications_change_nothing(aws: AwsPush) -> None:
    aws.write("forged/genuine.csv", "Region,Units\nnorth,1\n")  # one real notification
    wait_for(lambda: key("forged/genuine") in aws.data_keys(), "a real change")
    aws.settle()
    record = aws.record()
    assert record.current is not None
    seen = aws.requested()
    assert seen is not None
    number = max(seen.seen.values())
    lake, runs = aws.data_keys(), len(aws.runs())
    genuine = {
        "X-Goog-Channel-ID": record.current.id,
        "X-Goog-Channel-Token": aws.token(),
        "X-Goog-Resource-ID": record.current.resource_id,
        "X-Goog-Resource-State": "change",
        "X-Goog-Message-Number": str(number),
    }
    url = f"{aws.webhook}/drive/notifications"
    cases = [
        ({"X-Goog-Channel-Token": "guessed"}, 403),
        ({"X-Goog-Channel-ID": "drivepipe-" + "f" * 32}, 403),
        ({}, 200),  # a replay of the last accepted number: "duplicate"
        ({"X-Goog-Message-Number": "1"}, 200),  # an old one
    ]
    for change, status in cases:
        answer = requests.post(url, headers={**genuine, **change}, timeout=30)
        assert answer.status_code == status, (change, answer.text)
        assert genuine["X-Goog-Channel-Token"] not in answer.text
        if status == 200:
            assert answer.json()["status"] == "duplicate"
    assert aws.queued() == 0 and aws.requested() == seen
    assert aws.data_keys() == lake and len(aws.runs()) == runs
    s3 = aws.moto.client("s3")
    for name in aws.keys(""):  # manifests, state, the channel record, outputs: no token
        body = s3.get_object(Bucket=aws.output_bucket, Key=name)["Body"].read()
        assert genuine["X-Goog-Channel-Token"].encode() not in body, name


def test_the_schedule_renews_an_expiring_channel_with_no_gap(
    aws: AwsPush, env: pytest.MonkeyPatch
) -> None:
    aws.settle()
    old = aws.record().current
    assert old is not None
    env.setenv("DRIVEPIPE_CHANNEL_RENEW_HOURS", "1000")  # every channel is close to expiry
    aws.write("renew/before.csv", "Region,Units\nnorth,1\n")  # notified on the old channel
    results = aws.fire_schedule()
    assert results[0]["channel"]["action"] == "renewed", results
    new = aws.record().current
    assert new is not None and new.id != old.id
    history = aws.drive.watch.history
    assert history.index(("opened", new.id)) < history.index(("stopped", old.id))
    aws.write("renew/after.csv", "Region,Units\nnorth,2\n")
    wanted = {key("renew/before"), key("renew/after")}
    wait_for(lambda: wanted <= aws.data_keys(), "both changes, across the renewal")
    aws.settle()
    channels = {d.channel_id for d in aws.drive.watch.sent("change")}
    assert new.id in channels  # the later change came on the new channel


def test_a_dropped_notification_is_healed_by_the_next_reconcile(aws: AwsPush) -> None:
    (aws.root / "dropped").mkdir()
    aws.drive.poll_changes()  # the new folder is one change; the file must be the next
    aws.settle()
    pushes = len(aws.runs("push"))
    aws.drive.watch.faults.drop_next()
    aws.write("dropped/x.csv", "Region,Units\nnorth,7\n")
    aws.drive.poll_changes()
    aws.settle()
    assert [d.status for d in aws.drive.watch.sent("change")][-1] is None  # never sent
    assert key("dropped/x") not in aws.data_keys()
    assert len(aws.runs("push")) == pushes
    scheduled = len(aws.runs("schedule"))
    aws.fire_schedule()
    assert key("dropped/x") in aws.data_keys()
    # The schedule's run wrote it (run ids sort by second, then at random: count, not order).
    assert len(aws.runs("schedule")) == scheduled + 1


def test_a_channel_drive_stopped_is_reopened_by_the_schedule(
    aws: AwsPush, env: pytest.MonkeyPatch
) -> None:
    aws.settle()
    dead = aws.record().current
    assert dead is not None
    aws.drive.watch.forget(dead.id)  # Drive stops it without a word
    aws.write("silent/y.csv", "Region,Units\nnorth,8\n")
    aws.drive.poll_changes()
    aws.settle()
    assert key("silent/y") not in aws.data_keys()
    env.setenv("DRIVEPIPE_PUSH_SILENT_MINUTES", "0.0001")  # the last notification is "old"
    results = aws.fire_schedule()
    assert key("silent/y") in aws.data_keys()  # the reconcile healed it
    assert results[0]["channel"]["action"] == "reopened", results
    fresh = aws.record().current
    assert fresh is not None and fresh.id != dead.id
    aws.write("silent/z.csv", "Region,Units\nnorth,9\n")
    wait_for(lambda: key("silent/z") in aws.data_keys(), "a change on the new channel")


def test_the_webhook_refuses_bad_requests_over_http(aws: AwsPush) -> None:
    url = f"{aws.webhook}/drive/notifications"
    assert requests.post(url, timeout=30).status_code == 400  # no Drive headers
    big = requests.post(url, data=b"x" * 5000, timeout=30)
    assert big.status_code == 413 and big.json()["error"]["code"] == "body_too_large"
    assert requests.get(url, timeout=30).status_code in (403, 405)
