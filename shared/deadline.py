"""The invocation's deadline: how long the function has left, and each input's share of it.

A platform ends an invocation at its timeout without raising anything the run could catch:
the inputs not yet processed are simply never reached, and the state is not saved. So the
trigger layer builds a :class:`Deadline` when an invocation starts (:func:`from_lambda_context`
on AWS, :func:`from_env` on Cloud Functions, whose gen2 runtime has no remaining-time call) and
runs the work :func:`within` it. The run then, with no argument threaded through:

- asks :func:`refusal` before it starts each input: once only the *reserve* is left (the time
  kept to upload, save the state and the manifest, and release the lease), no further input
  starts; each one left is recorded as ``deferred`` for the next run;
- processes each input :func:`for_input`, whose *budget* is the time left less the reserve;
- checks cooperatively (:func:`check`) between steps and between streamed batches, which
  raises :class:`~shared.errors.OutOfTime` once the budget is spent.

Without a deadline (the CLI, chalice's local server and test client, tests) every call here
is a no-op. Time is read from the deadline's clock: ``time.monotonic`` unless a test injects
one.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from shared.errors import OutOfTime
from shared.settings import runtime_settings

Clock = Callable[[], float]
MAX_RESERVE_SHARE = 0.25  # the reserve never takes more than this share of the function's time
LAMBDA_RUNTIME_ENV = "AWS_LAMBDA_FUNCTION_NAME"  # set by the Lambda runtime, not by chalice
CLOUD_RUN_TIMEOUT_ENV = "CLOUD_RUN_TIMEOUT_SECONDS"  # what functions-framework's server reads


@dataclass(frozen=True)
class Deadline:
    """When the platform ends this invocation (``ends_at``, on ``clock``), and the reserve."""

    ends_at: float
    reserve: float  # seconds kept to finish the run
    source: str  # where the figure came from, for messages
    clock: Clock = time.monotonic

    @classmethod
    def after(
        cls,
        seconds: float,
        *,
        source: str,
        clock: Clock = time.monotonic,
        reserve: float | None = None,
    ) -> Deadline:
        """A deadline ``seconds`` from now; the reserve defaults to ``DRIVEPIPE_RESERVE_SECONDS``
        and is capped at a quarter of ``seconds``."""
        wanted = runtime_settings().reserve_seconds if reserve is None else reserve
        return cls(clock() + seconds, min(wanted, seconds * MAX_RESERVE_SHARE), source, clock)

    def remaining(self) -> float:
        """Seconds until the platform ends the invocation (negative once past it)."""
        return self.ends_at - self.clock()


@dataclass(frozen=True)
class InputBudget:
    """One input's share of the invocation: the time left less the reserve when it started."""

    deadline: Deadline
    seconds: float
    first: bool  # the first input of the invocation: it had all of the function's time

    def check(self) -> None:
        """Raise :class:`OutOfTime` once only the reserve is left."""
        left = self.deadline.remaining()
        if left <= self.deadline.reserve:
            raise OutOfTime(left, self.seconds, self.deadline.reserve, first=self.first)


@dataclass
class _Invocation:
    deadline: Deadline
    started: int = 0  # inputs started so far
    budget: InputBudget | None = None  # the input being processed


_active: ContextVar[_Invocation | None] = ContextVar("drivepipe_invocation", default=None)


@contextmanager
def within(deadline: Deadline | None) -> Iterator[Deadline | None]:
    """Run the block as one invocation ending at ``deadline`` (``None``: leave things as
    they are, so a trigger without a deadline changes nothing)."""
    if deadline is None:
        yield current()
        return
    token = _active.set(_Invocation(deadline))
    try:
        yield deadline
    finally:
        _active.reset(token)


def current() -> Deadline | None:
    """The deadline of the invocation running now, if there is one."""
    invocation = _active.get()
    return invocation.deadline if invocation else None


def refusal() -> str | None:
    """Why no further input may start now (only the reserve is left), else ``None``."""
    invocation = _active.get()
    if invocation is None:
        return None
    deadline = invocation.deadline
    left = deadline.remaining()
    if left > deadline.reserve:
        return None
    return (
        f"not started: the function had {max(left, 0.0):.1f} s left, within the "
        f"{deadline.reserve:.1f} s kept to finish the run ({deadline.source}); "
        "left for the next run"
    )


@contextmanager
def for_input() -> Iterator[InputBudget | None]:
    """Process one input within its budget; :func:`check` inside the block enforces it."""
    invocation = _active.get()
    if invocation is None:
        yield None
        return
    deadline = invocation.deadline
    budget = InputBudget(
        deadline, deadline.remaining() - deadline.reserve, first=invocation.started == 0
    )
    invocation.started += 1
    invocation.budget = budget
    try:
        yield budget
    finally:
        invocation.budget = None


def check() -> None:
    """A cooperative check: :class:`OutOfTime` when the input being processed spent its
    budget. Cheap (one clock read); a no-op without a deadline or outside an input."""
    invocation = _active.get()
    if invocation is not None and invocation.budget is not None:
        invocation.budget.check()


def from_lambda_context(
    context: Any, *, env: Mapping[str, str] | None = None, clock: Clock = time.monotonic
) -> Deadline | None:
    """A Lambda invocation's deadline: ``context.get_remaining_time_in_millis()`` from now.

    Only inside the Lambda runtime (``AWS_LAMBDA_FUNCTION_NAME`` set): chalice's test client
    hands every handler a context of a fixed 3 s whatever the stage's ``lambda_timeout``, and
    ``chalice local`` serves HTTP only; neither is a function that gets killed.
    """
    environ = os.environ if env is None else env
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if not environ.get(LAMBDA_RUNTIME_ENV) or not callable(remaining):
        return None
    reserve = runtime_settings(environ).reserve_seconds
    seconds = float(remaining()) / 1000
    return Deadline.after(seconds, source="Lambda context", clock=clock, reserve=reserve)


def from_env(
    *, env: Mapping[str, str] | None = None, clock: Clock = time.monotonic
) -> Deadline | None:
    """A Cloud Functions (gen2) invocation's deadline, starting now.

    Gen2 runs on Cloud Run, which tells a request nothing about its time left; the figure is
    the function's ``--timeout``: ``DRIVEPIPE_TIMEOUT_SECONDS`` (``deploy.package_gcp`` sets it
    beside each ``--timeout``), else ``CLOUD_RUN_TIMEOUT_SECONDS`` (what functions-framework's
    own server reads for its request timeout), else no deadline.
    """
    environ = os.environ if env is None else env
    settings = runtime_settings(environ)
    seconds = settings.timeout_seconds
    source = "DRIVEPIPE_TIMEOUT_SECONDS"
    if seconds is None:
        source = CLOUD_RUN_TIMEOUT_ENV
        try:
            seconds = float(environ.get(CLOUD_RUN_TIMEOUT_ENV, "") or 0)
        except ValueError:
            seconds = 0.0
        if not 0 < seconds < float("inf"):
            return None
    return Deadline.after(
        seconds, source=f"{source}={seconds:g}", clock=clock, reserve=settings.reserve_seconds
    )
