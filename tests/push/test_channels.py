"""A pipeline's channel on the emulator: opened, kept, renewed new-first, reopened, stopped."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.drive import DriveClient
from shared.errors import ConfigError
from shared.run import channels
from shared.run.lease import Lease
from shared.storage import layout, open_storage
from tests.drive_emulator.webhook import Recorder
from tests.push.conftest import NOW, PushSetup

HOUR = 3600.0


def watcher(setup: PushSetup, **kwargs: object) -> channels.Watcher:
    dest = open_storage(str(setup.output))
    return channels.Watcher(
        setup.pipeline, dest, drive=DriveClient.from_env(), clock=setup.clock, **kwargs
    )


def record(setup: PushSetup) -> channels.ChannelRecord:
    return channels.ChannelRecord.load(open_storage(str(setup.output)), "sales")


def open_ids(setup: PushSetup) -> set[str]:
    return {c.id for c in setup.drive.watch.open_channels()}


def test_start_opens_one_channel_and_keeps_only_a_reference(push_setup: PushSetup) -> None:
    outcome = channels.start(watcher(push_setup))
    assert outcome.action == "opened"
    current = record(push_setup).current
    assert current is not None and open_ids(push_setup) == {current.id}
    assert current.expires_at == NOW + 168 * HOUR  # the week Drive allows, on the clock
    assert current.token_ref.startswith(f"dir:{push_setup.secrets}")
    (token_file,) = push_setup.secrets.iterdir()
    assert oct(token_file.stat().st_mode & 0o777) == "0o600"
    assert (
        token_file.read_text()
        not in (push_setup.output / "_state").joinpath("channels", "sales.json").read_text()
    )
    again = channels.start(watcher(push_setup))
    assert (again.action, open_ids(push_setup)) == ("kept", {current.id})


def test_renewal_opens_the_new_channel_before_stopping_the_old(
    push_setup: PushSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    channels.start(watcher(push_setup))
    old = record(push_setup).current
    assert old is not None
    assert channels.maintain(watcher(push_setup)).action == "kept"
    push_setup.clock.now = NOW + 121 * HOUR  # 47 h left: inside the 48 h renewal window
    seen_open: list[set[str]] = []
    stop = DriveClient.stop_channel

    def watching_stop(self: DriveClient, channel_id: str, resource_id: str) -> bool:
        seen_open.append(open_ids(push_setup))  # what Drive had open when the old one stopped
        return stop(self, channel_id, resource_id)

    monkeypatch.setattr(DriveClient, "stop_channel", watching_stop)
    outcome = channels.maintain(watcher(push_setup))
    new = record(push_setup).current
    assert outcome.action == "renewed" and new is not None and new.id != old.id
    assert seen_open == [{old.id, new.id}]  # both open: no moment without a channel
    assert open_ids(push_setup) == {new.id} and record(push_setup).retiring == []
    assert len(list(push_setup.secrets.iterdir())) == 1  # the old token is deleted


@pytest.mark.parametrize("why", ["expired", "address", "silent"])
def test_a_dead_or_moved_channel_is_reopened(
    push_setup: PushSetup, recorder: Recorder, why: str
) -> None:
    channels.start(watcher(push_setup))
    old = record(push_setup).current
    assert old is not None
    kwargs: dict[str, object] = {}
    if why == "expired":
        push_setup.clock.now = NOW + 169 * HOUR
    elif why == "address":
        kwargs["address"] = recorder.url.replace("/drive/notifications", "/moved")
    else:
        push_setup.drive.watch.forget(old.id)  # Drive stopped it without a word
    outcome = channels.maintain(watcher(push_setup, **kwargs), silent=why == "silent")
    new = record(push_setup).current
    assert outcome.action == "reopened" and new is not None and new.id != old.id
    assert open_ids(push_setup) == {new.id}
    if why == "address":
        assert new.address.endswith("/moved")


def test_a_failed_stop_is_tried_again_by_the_next_upkeep(
    push_setup: PushSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.errors import DriveError

    channels.start(watcher(push_setup))
    old = record(push_setup).current
    assert old is not None

    def unavailable(self: DriveClient, channel_id: str, resource_id: str) -> bool:
        raise DriveError("backend error", status=503)

    with monkeypatch.context() as patch:
        patch.setattr(DriveClient, "stop_channel", unavailable)
        channels.start(watcher(push_setup), force=True)
    kept = record(push_setup)
    assert [c.id for c in kept.retiring] == [old.id]
    assert kept.find(old.id) is not None  # its notifications are still accepted meanwhile
    assert channels.maintain(watcher(push_setup)).action == "kept"
    assert record(push_setup).retiring == [] and old.id not in open_ids(push_setup)


def test_stop_closes_everything_and_forgets_it(push_setup: PushSetup) -> None:
    channels.start(watcher(push_setup))
    outcome = channels.stop(watcher(push_setup))
    assert outcome.action == "stopped" and open_ids(push_setup) == set()
    assert list(push_setup.secrets.iterdir()) == []
    assert not (push_setup.output / layout.channel_key("sales")).exists()
    assert channels.stop(watcher(push_setup)).action == "none"


def test_one_process_at_a_time_and_a_clear_error_without_an_address(
    push_setup: PushSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = open_storage(str(push_setup.output))
    held = Lease(dest, layout.channel_lock("sales"), ttl=60)
    assert held.try_acquire() is not None
    assert channels.start(watcher(push_setup)).action == "busy"
    assert open_ids(push_setup) == set()
    held.release()
    monkeypatch.delenv("DRIVEPIPE_PUSH_ADDRESS")
    from shared.settings import _load

    _load.cache_clear()
    with pytest.raises(ConfigError, match="DRIVEPIPE_PUSH_ADDRESS"):
        channels.start(watcher(push_setup))
    assert list(Path(push_setup.secrets).glob("*")) == []  # no token left behind
