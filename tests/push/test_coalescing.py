"""Coalescing: what a sync settles, when it hands one more off, and what a push worker runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shared.errors import BadWorkItem
from shared.run import pending
from shared.run.lease import Lease
from shared.run.push_queue import PushMessage
from shared.run.sync import SyncRequest, run_sync
from shared.storage import layout, open_storage
from shared.triggers.push_worker import on_push_message
from tests.push.conftest import PushSetup


def runs(setup: PushSetup) -> list[dict[str, Any]]:
    folder = Path(setup.output) / "_runs"
    found = [json.loads(p.read_text()) for p in folder.glob("*.json")] if folder.exists() else []
    return sorted(found, key=lambda m: m["run_id"])


def dest(setup: PushSetup) -> Any:
    return open_storage(str(setup.output))


def test_a_sync_settles_the_request_it_began_with(push_setup: PushSetup) -> None:
    assert pending.accept(dest(push_setup), "sales", "chan", 1)
    run_sync(SyncRequest(push_setup.pipeline, trigger="push"))
    assert pending.owed(dest(push_setup), "sales") is None
    assert push_setup.handed_off == []  # nothing came while it ran


def test_a_notification_during_a_sync_costs_one_more(push_setup: PushSetup) -> None:
    push_setup.write("sales/q2.csv", "order_id,units\n3,1\n")
    assert pending.accept(dest(push_setup), "sales", "chan", 1)

    def notified_meanwhile(*_: Any) -> None:  # progress: called while the sync runs
        pending.accept(dest(push_setup), "sales", "chan", 2)
        pending.accept(dest(push_setup), "sales", "chan", 3)

    run_sync(SyncRequest(push_setup.pipeline, trigger="push"), progress=notified_meanwhile)
    assert [m.pipeline for m in push_setup.handed_off] == ["sales"]  # one, for all of them
    assert pending.owed(dest(push_setup), "sales") is not None
    run_sync(SyncRequest(push_setup.pipeline, trigger="push"))
    assert pending.owed(dest(push_setup), "sales") is None and len(push_setup.handed_off) == 1


@pytest.mark.parametrize("kind", ["dry_run", "since", "failed"])
def test_runs_that_cover_less_settle_nothing(
    push_setup: PushSetup, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import UTC, datetime

    assert pending.accept(dest(push_setup), "sales", "chan", 1)
    request = SyncRequest(push_setup.pipeline, trigger="http")
    if kind == "dry_run":
        request = SyncRequest(push_setup.pipeline, trigger="http", dry_run=True)
    elif kind == "since":
        request = SyncRequest(
            push_setup.pipeline, trigger="http", since=datetime(2020, 1, 1, tzinfo=UTC)
        )
    else:
        import shared.run.sync as sync_module

        def broken(*_: Any, **__: Any) -> Any:
            raise RuntimeError("the sync died")

        monkeypatch.setattr(sync_module, "run_planned", broken)
    try:
        run_sync(request)
    except RuntimeError:
        assert kind == "failed"
    assert pending.owed(dest(push_setup), "sales") is not None
    assert push_setup.handed_off == []  # a failed run hands nothing off: its trigger retries


def test_a_worker_runs_only_an_owed_sync(push_setup: PushSetup) -> None:
    message = PushMessage("sales").to_json()
    assert on_push_message(message, sleep=_no_sleep)["outcome"] == "coalesced"
    assert runs(push_setup) == []
    assert pending.accept(dest(push_setup), "sales", "chan", 1, now=0.0)
    result = on_push_message(message, sleep=_no_sleep)
    assert result["outcome"] == "synced" and result["summary"]["counts"]["written"] == 1
    again = on_push_message(message, sleep=_no_sleep)
    assert again == {"outcome": "coalesced", "pipeline": "sales", "reason": "nothing owed"}
    assert [r["trigger"] for r in runs(push_setup)] == ["push"]


def test_a_worker_stops_when_a_sync_holds_the_lease(push_setup: PushSetup) -> None:
    assert pending.accept(dest(push_setup), "sales", "chan", 1, now=0.0)
    held = Lease(dest(push_setup), layout.sync_lock("sales"), ttl=60)
    assert held.try_acquire() is not None
    try:
        result = on_push_message(PushMessage("sales").to_json(), sleep=_no_sleep)
    finally:
        held.release()
    assert result["outcome"] == "coalesced" and "running sync" in result["reason"]
    assert runs(push_setup) == [] and pending.owed(dest(push_setup), "sales") is not None


def test_a_worker_waits_for_a_burst_to_settle_but_not_forever(push_setup: PushSetup) -> None:
    clock = {"now": 1000.0}
    slept: list[float] = []

    def busy_sleep(seconds: float) -> None:  # a notification lands during every wait
        slept.append(seconds)
        clock["now"] += seconds
        pending.accept(dest(push_setup), "sales", "chan", len(slept) + 1, now=clock["now"])

    assert pending.accept(dest(push_setup), "sales", "chan", 1, now=clock["now"])
    result = on_push_message(
        PushMessage("sales").to_json(), clock=lambda: clock["now"], sleep=busy_sleep
    )
    assert result["outcome"] == "synced"
    assert sum(slept) == pytest.approx(10.0)  # bounded by MAX_SETTLE_WAIT


def test_messages_that_are_not_push_messages_are_dropped(push_setup: PushSetup) -> None:
    for body in ("{", json.dumps({"kind": "other"}), json.dumps({"kind": "drivepipe.push"})):
        with pytest.raises(BadWorkItem):
            on_push_message(body, sleep=_no_sleep)
    unknown = PushMessage("nope").to_json()
    assert on_push_message(unknown, sleep=_no_sleep)["outcome"] == "dropped"


def _no_sleep(seconds: float) -> None:
    raise AssertionError(f"slept {seconds}s: the request was not settled")
