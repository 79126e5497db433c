"""RequestSlots: one bound on requests in flight, listing first (threads and events, no sleeps)."""

from __future__ import annotations

import threading

import pytest

from shared.drive.inflight import RequestSlots

WAIT = 10.0  # seconds an event may take before the test fails (never reached when it passes)


def _hold(
    slots: RequestSlots, urgent: bool, entered: threading.Event, leave: threading.Event
) -> threading.Thread:
    def run() -> None:
        with slots.held(urgent=urgent):
            entered.set()
            assert leave.wait(WAIT)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_no_more_than_the_limit_are_held_at_once() -> None:
    slots = RequestSlots(2)
    pairs = threading.Barrier(2)  # a holder leaves only once another holds a slot with it
    lock = threading.Lock()
    inside, most = [0], [0]

    def request(urgent: bool) -> None:
        with slots.held(urgent=urgent):
            with lock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            pairs.wait(WAIT)
            with lock:
                inside[0] -= 1

    threads = [threading.Thread(target=request, args=(n % 2 == 0,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert not any(thread.is_alive() for thread in threads)
    assert most[0] == 2 and slots.max_in_use == 2 and slots.in_use == 0


def test_a_waiting_listing_request_goes_before_waiting_downloads() -> None:
    slots = RequestSlots(1)
    order: list[str] = []
    release_first = threading.Event()
    first_in = threading.Event()
    holder = _hold(slots, False, first_in, release_first)
    assert first_in.wait(WAIT)
    waiting = threading.Barrier(3)

    def request(name: str, urgent: bool) -> threading.Thread:
        def run() -> None:
            waiting.wait(WAIT)
            with slots.held(urgent=urgent):
                order.append(name)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    download = request("download", False)
    listing = request("listing", True)
    waiting.wait(WAIT)  # both are about to ask for the slot the holder keeps
    while slots._urgent_waiting == 0:  # the listing request is queued (condition variable)
        threading.Event().wait(0.01)
    release_first.set()
    for thread in (holder, download, listing):
        thread.join(WAIT)
    assert order == ["listing", "download"]


def test_the_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RequestSlots(0)
