"""The lease in shared/run/lease.py: exclusive, expiring, safe to take over, fenced on renewal.

Time is fake: every lease reads a :class:`FakeClock` that moves only when a test moves it, and
background renewals run when the test steps them (:class:`SteppedStop`). The storage is real
(a local directory, moto_server, the GCS emulator), so how fast the machine is decides only how
long a test takes, never whether it passes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from shared.errors import LeaseHeld, LeaseLost
from shared.run.lease import Lease
from shared.storage import Storage, open_storage

STEP_TIMEOUT = 30.0  # a cap for a hung renewal thread, not a margin: steps never wait on it


class FakeClock:
    """Epoch seconds that move only when a test (or a fake sleep) moves them."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0  # 2023-11-14
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class SteppedStop(threading.Event):
    """A renewal thread's stop event whose timed waits end only when the test calls :meth:`step`.

    Each step moves the clock on by the renewal interval, lets the loop renew once, and returns
    when the loop is waiting again, i.e. once that renewal is written.
    """

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock
        self.cond = threading.Condition()
        self.waits = 0  # timed waits the renewal loop has started
        self.granted = 0  # intervals the test has let pass

    def set(self) -> None:
        super().set()
        with self.cond:
            self.cond.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        if timeout is None:
            return super().wait()
        with self.cond:
            self.waits += 1
            mine = self.waits
            self.cond.notify_all()
            if not self.cond.wait_for(
                lambda: self.is_set() or self.granted >= mine, timeout=STEP_TIMEOUT
            ):
                return True  # never stepped: stop, and let the test's step() report it
            if self.is_set():
                return True
            self.clock.now += timeout
            return False

    def step(self) -> None:
        with self.cond:
            self.granted += 1
            self.cond.notify_all()
            assert self.cond.wait_for(lambda: self.waits > self.granted, timeout=STEP_TIMEOUT), (
                "the renewal loop did not come back to wait after renewing"
            )


@pytest.fixture(params=["local", "s3", "gcs"])
def lease_store_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """Where leases live: a local directory, a moto_server bucket and a GCS emulator bucket.

    All three create atomically (the GCS emulator through devstack/gcs_emulator.py).
    """
    if request.param == "s3":
        return f"s3://{request.getfixturevalue('s3_bucket')}/dest"
    if request.param == "gcs":
        return f"gs://{request.getfixturevalue('gcs_bucket')}/dest"
    return str(tmp_path / "dest")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_second_holder_is_refused_with_who_and_until_when(
    lease_store_url: str, clock: FakeClock
) -> None:
    store = open_storage(lease_store_url)
    first = Lease(store, "sync/p", ttl=60, run_id="run-A", clock=clock)
    first.acquire()
    with pytest.raises(LeaseHeld) as refused:
        Lease(store, "sync/p", ttl=60, run_id="run-B", clock=clock).acquire()
    assert refused.value.holder.run_id == "run-A"
    assert "run run-A" in str(refused.value) and "until 20" in str(refused.value)
    first.release()
    second = Lease(store, "sync/p", ttl=60, run_id="run-B", clock=clock)
    assert second.acquire().epoch == 2  # a released lease is free at once
    assert [o.key for o in store.list("_locks/")] == ["_locks/sync/p/000000000002.json"]


def test_expired_lease_is_taken_over_and_the_old_holder_is_fenced(
    lease_store_url: str, clock: FakeClock
) -> None:
    store = open_storage(lease_store_url)
    crashed = Lease(store, "sync/p", ttl=0.3, run_id="crashed", clock=clock)
    crashed.acquire()
    clock.now += 0.4  # the holder died without releasing; its lease expired
    taker = Lease(store, "sync/p", ttl=60, run_id="taker", clock=clock)
    assert taker.acquire().epoch == 2
    with pytest.raises(LeaseLost, match="taken over"):
        crashed.renew()  # the old holder wakes up: it must not write shared state
    crashed.release()  # and releasing must not free the new holder's lease
    with pytest.raises(LeaseHeld):
        Lease(store, "sync/p", ttl=60, clock=clock).acquire()
    taker.renew()  # the taker still holds it


def test_a_lease_is_live_until_its_expiry_and_free_from_it(clock: FakeClock, tmp_path) -> None:
    store = open_storage(str(tmp_path / "dest"))
    Lease(store, "sync/p", ttl=0.3, clock=clock).acquire()
    clock.now += 0.29
    with pytest.raises(LeaseHeld):
        Lease(store, "sync/p", ttl=60, clock=clock).acquire()
    clock.now += 0.01  # exactly at expires_at: expired
    assert Lease(store, "sync/p", ttl=60, clock=clock).acquire().epoch == 2


def test_racing_takers_of_a_stale_lease_get_exactly_one_winner(
    lease_store_url: str, clock: FakeClock
) -> None:
    store = open_storage(lease_store_url)
    Lease(store, "sync/p", ttl=0.2, clock=clock).acquire()
    clock.now += 0.3
    winners: list[str] = []
    barrier = threading.Barrier(8)

    def take(n: int) -> None:
        lease = Lease(open_storage(lease_store_url), "sync/p", ttl=60, run_id=f"t{n}", clock=clock)
        barrier.wait()
        if lease.try_acquire() is not None:
            winners.append(lease.run_id or "")

    threads = [threading.Thread(target=take, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1
    latest = Lease(store, "sync/p", clock=clock).latest()
    assert latest is not None and latest.run_id == winners[0]


def release_after(holder: Lease, clock: FakeClock, seconds: float) -> Callable[[float], None]:
    """A fake sleep for a waiting taker: ``holder`` releases once ``seconds`` have passed."""
    release_at = clock.now + seconds

    def sleep(poll: float) -> None:
        clock.sleep(poll)
        if holder.info is not None and clock.now >= release_at:
            holder.release()

    return sleep


def test_bounded_wait_gets_the_lease_once_the_holder_releases(
    lease_store_url: str, clock: FakeClock
) -> None:
    store = open_storage(lease_store_url)
    holder = Lease(store, "sync/p", ttl=60, clock=clock)
    holder.acquire()
    started = clock.now
    waiter = Lease(store, "sync/p", ttl=60, clock=clock, sleep=release_after(holder, clock, 0.3))
    waiter.acquire(wait=5, poll=0.05)
    assert clock.now - started < 5
    assert len(clock.sleeps) >= 6  # it did wait, in polls, for the release 0.3 s in
    assert waiter.info is not None and waiter.info.epoch == 2


def test_bounded_wait_gives_up_with_lease_held_once_it_runs_out(clock: FakeClock, tmp_path) -> None:
    store = open_storage(str(tmp_path / "dest"))
    Lease(store, "sync/p", ttl=60, run_id="run-A", clock=clock).acquire()
    started = clock.now
    with pytest.raises(LeaseHeld) as refused:
        Lease(store, "sync/p", ttl=60, clock=clock, sleep=clock.sleep).acquire(wait=5, poll=0.5)
    assert refused.value.holder.run_id == "run-A"
    assert 5 <= clock.now - started < 5.5  # the whole wait, and not a poll more


def renewing(
    store: Storage, clock: FakeClock, *, ttl: float, every: float
) -> tuple[Lease, SteppedStop]:
    """A lease, acquired, whose background renewal runs one interval per ``step()``."""
    stop = SteppedStop(clock)
    lease = Lease(store, "sync/p", ttl=ttl, clock=clock, stop_event=stop)
    lease.acquire()
    lease.start_renewing(every=every)
    return lease, stop


def test_background_renewal_keeps_a_short_lease_alive(clock: FakeClock, tmp_path) -> None:
    store = open_storage(str(tmp_path / "dest"))
    lease, stop = renewing(store, clock, ttl=0.6, every=0.1)
    for _ in range(10):  # 1.0 s, longer than the TTL: only renewal keeps it
        stop.step()
    assert lease.info is not None and lease.info.expires_at == pytest.approx(clock.now + 0.6)
    with pytest.raises(LeaseHeld):
        Lease(store, "sync/p", ttl=60, clock=clock).acquire()
    lease.release()
    Lease(store, "sync/p", ttl=60, clock=clock).acquire()


def test_background_renewal_stops_once_the_lease_is_taken_over(clock: FakeClock, tmp_path) -> None:
    store = open_storage(str(tmp_path / "dest"))
    lease, stop = renewing(store, clock, ttl=0.6, every=0.1)
    stop.step()
    renewer = lease._renewer
    assert renewer is not None and renewer.is_alive()
    clock.now += 1.0  # as if the renewals stalled past the TTL, and another holder took over
    assert Lease(store, "sync/p", ttl=60, run_id="taker", clock=clock).acquire().epoch == 2
    with stop.cond:  # let the next interval pass: the renewal finds the new epoch and ends
        stop.granted += 1
        stop.cond.notify_all()
    renewer.join(timeout=STEP_TIMEOUT)
    assert not renewer.is_alive()
    assert lease.lost is not None and "taken over" in lease.lost
    with pytest.raises(LeaseLost, match="taken over"):
        lease.check()
