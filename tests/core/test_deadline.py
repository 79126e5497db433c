"""The invocation's deadline (shared.deadline): where it comes from, and how an input's share
of it is spent. Time comes from an injected clock; nothing here sleeps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from shared import deadline
from shared.config import parse_config
from shared.deadline import Deadline
from shared.errors import ConfigError, OutOfTime
from shared.settings import runtime_settings
from shared.triggers import aws, gcp, routes, service
from shared.triggers.http import Response


@dataclass
class FakeClock:
    """A monotonic clock that moves only when told to."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeLambdaContext:
    """The Lambda runtime's context: milliseconds left, from the fake clock."""

    def __init__(self, clock: FakeClock, timeout_s: float) -> None:
        self.clock, self.ends = clock, clock() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return int((self.ends - self.clock()) * 1000)


def test_the_reserve_is_the_setting_capped_at_a_quarter_of_the_function_s_time() -> None:
    clock = FakeClock()
    assert Deadline.after(900, source="t", clock=clock).reserve == 30.0  # the default
    assert Deadline.after(60, source="t", clock=clock).reserve == 15.0  # a quarter of 60 s
    assert Deadline.after(100, source="t", clock=clock, reserve=5).reserve == 5
    assert runtime_settings({"DRIVEPIPE_RESERVE_SECONDS": "12"}).reserve_seconds == 12.0
    with pytest.raises(ConfigError, match="DRIVEPIPE_RESERVE_SECONDS"):
        runtime_settings({"DRIVEPIPE_RESERVE_SECONDS": "-1"})
    with pytest.raises(ConfigError, match="DRIVEPIPE_TIMEOUT_SECONDS"):
        runtime_settings({"DRIVEPIPE_TIMEOUT_SECONDS": "soon"})


def test_inputs_start_while_more_than_the_reserve_is_left_and_stop_at_it() -> None:
    clock = FakeClock()
    with deadline.within(Deadline.after(100, source="test", clock=clock, reserve=10)):
        with deadline.for_input() as first:
            assert first is not None and first.first and first.seconds == 90
            clock.advance(50)
            deadline.check()  # 50 s left: within budget
        assert deadline.refusal() is None
        with deadline.for_input() as second:
            assert second is not None and not second.first and second.seconds == 40
            clock.advance(40)  # exactly the reserve left
            with pytest.raises(OutOfTime) as info:
                deadline.check()
        assert str(info.value) == (
            "would exceed the function's remaining time: 10.0 s left, budget 40.0 s "
            "(10.0 s are kept to finish the run)"
        )
        assert (info.value.first, info.value.remaining) == (False, 10.0)
        refused = deadline.refusal()
        assert refused is not None and refused.startswith("not started: the function had 10.0 s")
        assert "left for the next run" in refused
        deadline.check()  # outside an input: nothing to stop
    assert deadline.current() is None and deadline.refusal() is None


def test_without_a_deadline_every_call_is_a_no_op() -> None:
    with deadline.within(None), deadline.for_input() as budget:
        assert budget is None
        deadline.check()
        assert deadline.refusal() is None


def test_lambda_deadline_only_inside_the_lambda_runtime() -> None:
    clock = FakeClock()
    context = FakeLambdaContext(clock, timeout_s=60)
    clock.advance(2)  # the runtime started counting before the handler ran
    inside = {"AWS_LAMBDA_FUNCTION_NAME": "drivepipe-dev-on_upload"}
    found = deadline.from_lambda_context(context, env=inside, clock=clock)
    assert found is not None and found.remaining() == 58 and found.reserve == 58 / 4
    assert deadline.from_lambda_context(context, env={}, clock=clock) is None  # chalice test
    assert deadline.from_lambda_context({"requestId": "x"}, env=inside, clock=clock) is None


def test_cloud_functions_deadline_comes_from_the_deployed_timeout() -> None:
    clock = FakeClock()
    ours = deadline.from_env(env={"DRIVEPIPE_TIMEOUT_SECONDS": "540"}, clock=clock)
    assert (
        ours is not None and ours.remaining() == 540 and "DRIVEPIPE_TIMEOUT_SECONDS" in ours.source
    )
    theirs = deadline.from_env(env={"CLOUD_RUN_TIMEOUT_SECONDS": "300"}, clock=clock)
    assert theirs is not None and theirs.remaining() == 300
    both = {"DRIVEPIPE_TIMEOUT_SECONDS": "120", "CLOUD_RUN_TIMEOUT_SECONDS": "300"}
    assert deadline.from_env(env=both, clock=clock).remaining() == 120  # type: ignore[union-attr]
    for junk in ({}, {"CLOUD_RUN_TIMEOUT_SECONDS": "0"}, {"CLOUD_RUN_TIMEOUT_SECONDS": "x"}):
        assert deadline.from_env(env=junk, clock=clock) is None


class _Event:
    """What Chalice hands a middleware for an event handler: its ``context``."""

    def __init__(self, context: Any) -> None:
        self.context = context


class _Request:
    """What Chalice hands a middleware for a route: ``lambda_context`` (``context`` is API
    Gateway's request context, a dict)."""

    def __init__(self, context: Any) -> None:
        self.lambda_context, self.context = context, {"requestId": "r"}


def test_the_chalice_middleware_carries_the_context_s_deadline_into_the_core(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "drivepipe-dev-on_upload")
    seen: list[float | None] = []

    def handler(_: Any) -> str:
        found = deadline.current()
        seen.append(round(found.remaining()) if found else None)
        return "ok"

    context = FakeLambdaContext(FakeClock(), timeout_s=0)  # its own clock: ms left only
    context.ends += 300  # 300 s left when the invocation starts
    assert aws.invocation_middleware(_Event(context), handler) == "ok"
    assert aws.invocation_middleware(_Request(context), handler) == "ok"
    assert aws.invocation_middleware(_Request(None), handler) == "ok"  # no context: no deadline
    assert seen == [300, 300, None]
    assert deadline.current() is None  # only for the invocation


def test_cloud_functions_triggers_run_within_the_deployed_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[float | None] = []

    def remaining() -> None:
        found = deadline.current()
        seen.append(found.remaining() if found else None)

    def on_object(*_: Any, **__: Any) -> dict[str, Any]:
        remaining()
        return {"outcome": "ignored", "reason": "test"}

    def health() -> Response:
        remaining()
        return Response(200, {"status": "ok"})

    monkeypatch.setattr(service, "on_object", on_object)
    monkeypatch.setattr(service, "health", health)
    attributes = {"id": "1", "type": "google.cloud.storage.object.v1.finalized"}
    data = {"bucket": "in", "name": "a.csv", "generation": "7"}
    monkeypatch.delenv("DRIVEPIPE_TIMEOUT_SECONDS", raising=False)
    monkeypatch.delenv("CLOUD_RUN_TIMEOUT_SECONDS", raising=False)
    gcp.on_finalized(attributes, data)
    assert routes.route("GET", "/health").status == 200
    assert seen == [None, None]  # no timeout known: no deadline (functions-framework locally)
    monkeypatch.setenv("DRIVEPIPE_TIMEOUT_SECONDS", "540")
    gcp.on_finalized(attributes, data)
    assert routes.route("GET", "/health").status == 200
    assert all(s is not None and 530 < s <= 540 for s in seen[2:]) and len(seen) == 4
    assert deadline.current() is None


def _fanout_config(max_attempts: int) -> dict[str, Any]:
    body = {"source": {"folder_id": "f"}, "output": {"url": "s3://b/p"}}
    return {"pipelines": {"big": {**body, "fanout": {"max_attempts": max_attempts}}}}


def test_poison_attempts_must_stay_below_the_queue_s_deliveries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert parse_config(_fanout_config(4)).pipelines["big"].fanout is not None  # 3 < 4
    with pytest.raises(ConfigError) as info:
        parse_config(_fanout_config(3))
    message = str(info.value)
    assert "pipelines.big.fanout.max_attempts: 3 must be above DRIVEPIPE_POISON_ATTEMPTS (3)" in (
        message
    )
    monkeypatch.setenv("DRIVEPIPE_POISON_ATTEMPTS", "2")
    assert parse_config(_fanout_config(3)).pipelines["big"].fanout is not None
    monkeypatch.setenv("DRIVEPIPE_POISON_ATTEMPTS", "5")
    with pytest.raises(ConfigError, match=r"max_attempts: 5 must be above .* \(5\)"):
        parse_config(_fanout_config(5))
