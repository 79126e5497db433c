"""Unit tests of the client-wide AIMD rate limiter, on a fake clock."""

from __future__ import annotations

import pytest

from shared.drive import DriveClient, TokenAuth
from shared.drive.throttle import AdaptiveRateLimiter


class FakeClock:
    """A clock that only moves when slept on."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _limiter(clock: FakeClock, **options: float) -> AdaptiveRateLimiter:
    return AdaptiveRateLimiter(clock=clock, sleep=clock.sleep, **options)


def _send(limiter: AdaptiveRateLimiter, clock: FakeClock, count: int, gap: float) -> float:
    sent = 0.0
    for _ in range(count):
        sent = limiter.acquire()
        clock.now += gap
    return sent


def test_unlimited_until_rate_limited_then_halves_the_measured_rate() -> None:
    clock = FakeClock()
    limiter = _limiter(clock)
    sent = _send(limiter, clock, 300, 0.005)  # 200 requests/s for 1.5 s, never waits
    assert clock.sleeps == [] and limiter.rate is None
    limiter.on_rate_limited(sent)
    assert limiter.rate == pytest.approx(100.0)  # half of the 200/s sent in the last second
    assert limiter.stats.decreases == 1


def test_answers_to_requests_sent_before_a_cut_do_not_cut_again() -> None:
    clock = FakeClock()
    limiter = _limiter(clock)
    in_flight = [limiter.acquire() for _ in range(50)]
    clock.now += 0.5
    for sent in in_flight:  # the whole burst comes back 403
        limiter.on_rate_limited(sent)
    assert limiter.stats.decreases == 1
    assert limiter.rate == pytest.approx(25.0)
    later = limiter.acquire()
    limiter.on_rate_limited(later)  # sent after the cut: the new rate is still too fast
    assert limiter.stats.decreases == 2
    assert limiter.rate == pytest.approx(12.5)


def test_every_thread_then_waits_for_a_token_at_the_cut_rate() -> None:
    clock = FakeClock()
    limiter = _limiter(clock, min_rate=1.0)
    limiter.on_rate_limited(limiter.acquire())
    assert limiter.rate == pytest.approx(1.0)  # floor: only one request was measured
    start = clock.now
    for _ in range(5):
        limiter.acquire()
    assert clock.now - start == pytest.approx(5.0, rel=0.01)
    assert limiter.stats.waited_s == pytest.approx(5.0, rel=0.01)


def test_the_rate_never_drops_below_the_floor() -> None:
    clock = FakeClock()
    limiter = _limiter(clock, min_rate=10.0)
    for _ in range(10):
        limiter.on_rate_limited(limiter.acquire())
    assert limiter.rate == pytest.approx(10.0)
    assert limiter.stats.lowest_rate == pytest.approx(10.0)


def test_successes_raise_the_rate_additively_then_lift_the_cap() -> None:
    clock = FakeClock()
    limiter = _limiter(clock, recovery=0.1)
    sent = _send(limiter, clock, 200, 0.005)
    limiter.on_rate_limited(sent)  # 200/s measured -> 100/s
    for _ in range(100):  # one second of successes at 100/s gains about 10% of 200/s
        limiter.on_success()
    rate = limiter.rate
    assert rate is not None and 115.0 < rate < 125.0
    for _ in range(10_000):
        limiter.on_success()
        if limiter.rate is None:
            break
    assert limiter.rate is None  # past twice the rate that was limited: pacing stops


def test_max_rate_paces_from_the_start_and_caps_recovery() -> None:
    clock = FakeClock()
    limiter = _limiter(clock, max_rate=20.0)
    assert limiter.rate == 20.0
    start = clock.now
    for _ in range(21):
        limiter.acquire()
    assert clock.now - start == pytest.approx(1.0, rel=0.05)
    for _ in range(1000):
        limiter.on_success()
    assert limiter.rate == 20.0


@pytest.mark.parametrize(
    "options",
    [{"max_rate": 0.0}, {"decrease": 1.0}, {"decrease": 0.0}, {"min_rate": 0.0}, {"recovery": -1}],
)
def test_bad_settings_are_refused(options: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        AdaptiveRateLimiter(**options)


def test_client_wires_the_limiter_and_refuses_a_cap_without_it() -> None:
    url = "http://127.0.0.1:9"  # never contacted
    with DriveClient(TokenAuth("t"), base_url=url, max_qps=50) as client:
        assert client.limiter is not None and client.limiter.rate == 50
    with DriveClient(TokenAuth("t"), base_url=url, adaptive_backoff=False) as client:
        assert client.limiter is None
    with pytest.raises(ValueError, match="max_qps"):
        DriveClient(TokenAuth("t"), base_url=url, adaptive_backoff=False, max_qps=5)
