"""changes.watch / channels.stop and the notifications the emulator POSTs, checked with the
real google-api-python-client and against the Channel schema of drive.v3.json."""

from __future__ import annotations

import email.utils
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from devstack.drive_emulator import DriveEmulator
from devstack.drive_emulator.watch import MAX_CHANGES_LIFETIME_S
from tests.drive_emulator.test_discovery_schema import DISCOVERY, schema_errors
from tests.drive_emulator.webhook import Recorder

discovery = pytest.importorskip("googleapiclient.discovery")
errors = pytest.importorskip("googleapiclient.errors")
NOW = 1_750_000_000.0


class Clock:
    """An injectable wall clock the tests move by hand."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "sales").mkdir(parents=True)
    (root / "sales" / "q1.csv").write_bytes(b"a\n1\n")
    return root


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def emu(tree: Path, clock: Clock) -> Iterator[DriveEmulator]:
    # No background polling: each test says when the disk is looked at (poll_changes).
    with DriveEmulator(tree, clock=clock, watch_poll_interval=None) as emulator:
        emulator.watch.retry_delays = (0.05,)
        yield emulator


@pytest.fixture
def hook() -> Iterator[Recorder]:
    with Recorder() as recorder:
        yield recorder


def service_for(emu: DriveEmulator) -> Any:
    return discovery.build(
        "drive",
        "v3",
        static_discovery=True,
        client_options={"api_endpoint": f"{emu.url}/"},
        developerKey="test-key",
        cache_discovery=False,
    )


def channel_body(address: str, channel_id: str = "chan-1", **extra: Any) -> dict[str, Any]:
    expiration = str(int((NOW + 3_600) * 1000))
    return {
        "id": channel_id,
        "type": "web_hook",
        "address": address,
        "token": "s3cret",
        "expiration": expiration,
        **extra,
    }


def edit(path: Path, content: bytes, stamp: int) -> None:
    path.write_bytes(content)
    os.utime(path, (stamp, stamp))


def test_google_client_opens_and_stops_a_channel(emu: DriveEmulator, hook: Recorder) -> None:
    drive = service_for(emu)
    token = drive.changes().getStartPageToken().execute()["startPageToken"]
    channel = drive.changes().watch(pageToken=token, body=channel_body(hook.url)).execute()
    doc = json.loads(DISCOVERY.read_text())
    assert schema_errors(channel, {"$ref": "Channel"}, doc, "Channel") == []
    assert channel["kind"] == "api#channel" and channel["id"] == "chan-1"
    assert channel["expiration"] == str(int((NOW + 3_600) * 1000))
    assert channel["resourceUri"].startswith(f"{emu.url}/changes?")

    sync = hook.wait_for(1)[0]
    assert sync.state == "sync" and sync.number == 1 and sync.body == b""
    assert sync.headers["X-Goog-Channel-ID"] == "chan-1"
    assert sync.headers["X-Goog-Channel-Token"] == "s3cret"
    assert sync.headers["X-Goog-Resource-ID"] == channel["resourceId"]
    assert sync.headers["X-Goog-Resource-URI"] == channel["resourceUri"]
    expires = email.utils.parsedate_to_datetime(sync.headers["X-Goog-Channel-Expiration"])
    assert expires.timestamp() == NOW + 3_600

    stop = {"id": "chan-1", "resourceId": channel["resourceId"]}
    assert drive.channels().stop(body=stop).execute() in ("", {}, None)
    with pytest.raises(errors.HttpError) as caught:
        drive.channels().stop(body=stop).execute()
    assert caught.value.status_code == 404


def test_each_change_is_one_notification_with_a_growing_number(
    emu: DriveEmulator, hook: Recorder, tree: Path
) -> None:
    drive = service_for(emu)
    token = drive.changes().getStartPageToken().execute()["startPageToken"]
    drive.changes().watch(pageToken=token, body=channel_body(hook.url)).execute()
    hook.wait_for(1)
    edit(tree / "sales" / "q1.csv", b"a\n2\n", 1_700_000_001)
    (tree / "sales" / "q2.csv").write_bytes(b"a\n3\n")
    assert emu.poll_changes() == 2
    received = hook.wait_for(3)
    assert [r.state for r in received] == ["sync", "change", "change"]
    numbers = [r.number for r in received]
    assert numbers == sorted(numbers) and len(set(numbers)) == 3
    assert all(r.headers["User-Agent"].startswith("APIs-Google") for r in received)
    # the notification says only that something changed: the feed says what
    listing = drive.changes().list(pageToken=token).execute()
    assert len(listing["changes"]) == 2


def test_expiration_is_honoured_on_the_injected_clock(
    emu: DriveEmulator, hook: Recorder, tree: Path, clock: Clock
) -> None:
    drive = service_for(emu)
    token = drive.changes().getStartPageToken().execute()["startPageToken"]
    channel = drive.changes().watch(pageToken=token, body=channel_body(hook.url)).execute()
    hook.wait_for(1)
    clock.now = NOW + 3_600  # the expiration instant
    edit(tree / "sales" / "q1.csv", b"a\n9\n", 1_700_000_002)
    emu.poll_changes()
    assert emu.watch.wait_idle()
    assert len(hook.received) == 1 and emu.watch.open_channels() == []
    with pytest.raises(errors.HttpError) as caught:
        stop = {"id": channel["id"], "resourceId": channel["resourceId"]}
        drive.channels().stop(body=stop).execute()
    assert caught.value.status_code == 404


def test_expiration_default_and_cap(emu: DriveEmulator, hook: Recorder) -> None:
    drive = service_for(emu)
    token = drive.changes().getStartPageToken().execute()["startPageToken"]
    unset = channel_body(hook.url, "no-expiry")
    del unset["expiration"]
    plain = drive.changes().watch(pageToken=token, body=unset).execute()
    assert int(plain["expiration"]) == int((NOW + 3_600) * 1000)
    far = channel_body(hook.url, "far", expiration=str(int((NOW + 30 * 86_400) * 1000)))
    capped = drive.changes().watch(pageToken=token, body=far).execute()
    assert int(capped["expiration"]) == int((NOW + MAX_CHANGES_LIFETIME_S) * 1000)


@pytest.mark.parametrize(
    ("body", "query", "status", "reason"),
    [
        (channel_body("http://example.com/hook"), "PT", 400, "push.webhookUrlNotHttps"),
        ({"type": "web_hook", "address": "https://x.test/h"}, "PT", 400, "required"),
        (channel_body("https://x.test/h", "x" * 65), "PT", 400, "invalid"),
        (channel_body("https://x.test/h", type="email"), "PT", 400, "invalid"),
        (channel_body("https://x.test/h"), None, 400, "required"),
        (channel_body("https://x.test/h"), "999999", 400, "invalid"),
    ],
    ids=["not-https", "no-id", "long-id", "bad-type", "no-page-token", "bad-page-token"],
)
def test_bad_watch_requests(
    emu: DriveEmulator, body: dict[str, Any], query: str | None, status: int, reason: str
) -> None:
    params: dict[str, str] = {"key": "k"}
    if query is not None:
        params["pageToken"] = emu.start_page_token() if query == "PT" else query
    answer = requests.post(f"{emu.url}/changes/watch", params=params, json=body, timeout=10)
    assert answer.status_code == status
    assert answer.json()["error"]["errors"][0]["reason"] == reason


def test_a_channel_id_is_unique_and_get_is_refused(emu: DriveEmulator, hook: Recorder) -> None:
    params = {"key": "k", "pageToken": emu.start_page_token()}
    url = f"{emu.url}/changes/watch"
    assert requests.post(url, params=params, json=channel_body(hook.url), timeout=10).ok
    again = requests.post(url, params=params, json=channel_body(hook.url), timeout=10)
    assert again.status_code == 400
    assert again.json()["error"]["errors"][0]["reason"] == "channelIdNotUnique"
    assert requests.get(url, params=params, timeout=10).status_code == 405


def test_dropped_and_duplicated_notifications(
    emu: DriveEmulator, hook: Recorder, tree: Path
) -> None:
    token = emu.start_page_token()
    service_for(emu).changes().watch(pageToken=token, body=channel_body(hook.url)).execute()
    hook.wait_for(1)
    emu.watch.faults.drop_next()
    edit(tree / "sales" / "q1.csv", b"a\n5\n", 1_700_000_010)
    emu.poll_changes()
    emu.watch.faults.duplicate_next()
    edit(tree / "sales" / "q1.csv", b"a\n66\n", 1_700_000_011)
    emu.poll_changes()
    received = hook.wait_for(3)
    assert emu.watch.wait_idle()
    changes = [r for r in received if r.state == "change"]
    assert len(changes) == 2 and changes[0].number == changes[1].number  # a replay
    dropped = [d for d in emu.watch.sent("change") if d.status is None]
    assert len(dropped) == 1 and dropped[0].message_number < changes[0].number


def test_a_failing_address_is_retried_on_5xx_only(emu: DriveEmulator, tree: Path) -> None:
    with Recorder(statuses=[200, 503, 200, 404]) as hook:
        token = emu.start_page_token()
        service_for(emu).changes().watch(pageToken=token, body=channel_body(hook.url)).execute()
        edit(tree / "sales" / "q1.csv", b"a\n7\n", 1_700_000_020)
        emu.poll_changes()
        edit(tree / "sales" / "q1.csv", b"a\n77\n", 1_700_000_021)
        emu.poll_changes()
        hook.wait_for(4)
        assert emu.watch.wait_idle()
        sent = emu.watch.sent("change")
        assert [(d.status, d.attempts) for d in sent] == [(200, 2), (404, 1)]


def test_deliveries_never_block_the_api(emu: DriveEmulator, tree: Path) -> None:
    release = threading.Event()
    arrived = threading.Event()

    with Recorder() as hook:
        original = hook._server.RequestHandlerClass.do_POST  # type: ignore[attr-defined]

        def stalled(handler: Any) -> None:
            arrived.set()
            release.wait(30)
            original(handler)

        hook._server.RequestHandlerClass.do_POST = stalled  # type: ignore[attr-defined]
        token = emu.start_page_token()
        service_for(emu).changes().watch(pageToken=token, body=channel_body(hook.url)).execute()
        assert arrived.wait(30)  # the sync message is stuck in the webhook
        edit(tree / "sales" / "q1.csv", b"a\n8\n", 1_700_000_030)
        assert emu.poll_changes() == 1  # queued behind the stuck one, not sent inline
        listing = requests.get(f"{emu.url}/files", params={"key": "k"}, timeout=30)
        assert listing.ok and not release.is_set()  # answered while a delivery hangs
        release.set()
        hook.wait_for(2)


def test_a_shared_drive_channel_needs_the_all_drives_flags(tmp_path: Path) -> None:
    root = tmp_path / "shared"
    root.mkdir()
    shared = DriveEmulator(root, drive_id="0ADrive", clock=Clock(), watch_poll_interval=None)
    with shared as emu, Recorder() as hook:
        token = emu.start_page_token()
        url = f"{emu.url}/changes/watch"
        base = {"key": "k", "pageToken": token, "driveId": "0ADrive"}
        blind = {**base, "supportsAllDrives": "true"}
        seeing = {**blind, "includeItemsFromAllDrives": "true"}
        assert requests.post(url, params=blind, json=channel_body(hook.url, "a"), timeout=10).ok
        assert requests.post(url, params=seeing, json=channel_body(hook.url, "b"), timeout=10).ok
        hook.wait_for(2)
        (root / "x.csv").write_bytes(b"a\n1\n")
        emu.poll_changes()
        received = hook.wait_for(3)
        assert emu.watch.wait_idle()
        changes = [r.headers["X-Goog-Channel-ID"] for r in received if r.state == "change"]
        assert changes == ["b"]


def test_our_client_sends_what_the_discovery_document_describes(
    emu: DriveEmulator, hook: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """shared.drive's changes.watch / channels.stop: documented params, a Channel body."""
    from devstack.drive_emulator.api import METHOD_PARAMS
    from shared.drive import DriveClient
    from shared.drive.http import DriveHttp

    sent: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    post = DriveHttp.post_json

    def recording(self: DriveHttp, path: str, params: dict[str, Any], body: dict[str, Any]) -> Any:
        sent.append((path, params, body))
        return post(self, path, params, body)

    monkeypatch.setattr(DriveHttp, "post_json", recording)
    client = DriveClient.from_env({"DRIVE_API_URL": emu.url, "DRIVE_ACCESS_TOKEN": "t"})
    opened = client.watch_changes(
        channel_id="drivepipe-" + "a" * 32,
        address=hook.url,
        token="t" * 43,
        expiration_ms=int((NOW + 3_600) * 1000),
        page_token=client.start_page_token(),
    )
    assert opened.expiration_ms == int((NOW + 3_600) * 1000)
    assert client.stop_channel(opened.id, opened.resource_id) is True
    assert client.stop_channel(opened.id, opened.resource_id) is False  # 404: already gone
    doc = json.loads(DISCOVERY.read_text())
    (watch_path, watch_params, watch_body), (stop_path, _, stop_body) = sent[:2]
    assert (watch_path, stop_path) == ("changes/watch", "channels/stop")
    assert set(watch_params) <= set(METHOD_PARAMS["drive.changes.watch"])
    for body in (watch_body, stop_body):
        assert schema_errors(body, {"$ref": "Channel"}, doc, "Channel") == []
    assert watch_body["type"] == "web_hook"
