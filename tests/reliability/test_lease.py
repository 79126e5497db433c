"""The lease in shared/run/lease.py: exclusive, expiring, safe to take over, fenced on renewal."""

from __future__ import annotations

import threading
import time

import pytest

from shared.errors import LeaseHeld, LeaseLost
from shared.run.lease import Lease
from shared.storage import open_storage


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


def test_second_holder_is_refused_with_who_and_until_when(lease_store_url: str) -> None:
    store = open_storage(lease_store_url)
    first = Lease(store, "sync/p", ttl=60, run_id="run-A")
    first.acquire()
    with pytest.raises(LeaseHeld) as refused:
        Lease(store, "sync/p", ttl=60, run_id="run-B").acquire()
    assert refused.value.holder.run_id == "run-A"
    assert "run run-A" in str(refused.value) and "until 20" in str(refused.value)
    first.release()
    second = Lease(store, "sync/p", ttl=60, run_id="run-B")
    assert second.acquire().epoch == 2  # a released lease is free at once
    assert [o.key for o in store.list("_locks/")] == ["_locks/sync/p/000000000002.json"]


def test_expired_lease_is_taken_over_and_the_old_holder_is_fenced(lease_store_url: str) -> None:
    store = open_storage(lease_store_url)
    crashed = Lease(store, "sync/p", ttl=0.3, run_id="crashed")
    crashed.acquire()
    time.sleep(0.4)  # the holder died without releasing; its lease expired
    taker = Lease(store, "sync/p", ttl=60, run_id="taker")
    assert taker.acquire().epoch == 2
    with pytest.raises(LeaseLost, match="taken over"):
        crashed.renew()  # the old holder wakes up: it must not write shared state
    crashed.release()  # and releasing must not free the new holder's lease
    with pytest.raises(LeaseHeld):
        Lease(store, "sync/p", ttl=60).acquire()
    taker.renew()  # the taker still holds it


def test_racing_takers_of_a_stale_lease_get_exactly_one_winner(lease_store_url: str) -> None:
    store = open_storage(lease_store_url)
    Lease(store, "sync/p", ttl=0.2).acquire()
    time.sleep(0.3)
    winners: list[str] = []
    barrier = threading.Barrier(8)

    def take(n: int) -> None:
        lease = Lease(open_storage(lease_store_url), "sync/p", ttl=60, run_id=f"t{n}")
        barrier.wait()
        if lease.try_acquire() is not None:
            winners.append(lease.run_id or "")

    threads = [threading.Thread(target=take, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1
    latest = Lease(store, "sync/p").latest()
    assert latest is not None and latest.run_id == winners[0]


def test_bounded_wait_gets_the_lease_once_the_holder_releases(lease_store_url: str) -> None:
    store = open_storage(lease_store_url)
    holder = Lease(store, "sync/p", ttl=60)
    holder.acquire()
    threading.Timer(0.3, holder.release).start()
    started = time.monotonic()
    Lease(store, "sync/p", ttl=60).acquire(wait=5, poll=0.05)
    assert time.monotonic() - started < 5


def test_background_renewal_keeps_a_short_lease_alive(tmp_path) -> None:
    store = open_storage(str(tmp_path / "dest"))
    lease = Lease(store, "sync/p", ttl=0.6)
    lease.acquire()
    lease.start_renewing(every=0.1)
    time.sleep(1.0)  # longer than the TTL: only renewal keeps it
    with pytest.raises(LeaseHeld):
        Lease(store, "sync/p", ttl=60).acquire()
    lease.release()
    Lease(store, "sync/p", ttl=60).acquire()
