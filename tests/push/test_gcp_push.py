"""End to end on the GCP local path: the emulator's real notifications reach the
``drive_notifications`` function (functions-framework), which publishes to the push topic; the
Pub/Sub stand-in delivers it to ``push_worker``; ``on_schedule`` renews and reconciles.

The functions run with ``DRIVEPIPE_CHANNEL_HOURS=24`` (under the 48 h renewal window), so every
scheduled tick renews the channel: that is the renewal the tests watch.
"""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests

from devstack.gcp_dev import GcpDevStack
from devstack.servers import GcsEmulator
from shared.run import channel_secrets, pending
from shared.run.channels import ChannelRecord
from shared.settings import _load
from shared.storage import layout, open_storage
from tests.push.aws_stack import wait_for


def key(path: str) -> str:
    """Where the table layout puts the output of Drive file ``path`` (no extension) under the
    destination prefix ``sales/``: the pipeline's table ``sales``, folders joined by ``__``."""
    return f"sales/{layout.table_output_key('sales', path, '.parquet')}"


pytestmark = pytest.mark.slow
CONFIG = Path(__file__).resolve().parents[2] / "gcp_functions" / "drivepipe.toml"
TIMEOUT = 90.0


@dataclass
class GcpPush:
    stack: GcpDevStack
    root: Path

    @property
    def drive(self) -> Any:
        return self.stack.drive

    def write(self, relpath: str, text: str) -> None:
        """Save as editors do (hidden temporary file renamed into place): one change."""
        path = self.root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        previous = path.stat().st_mtime_ns if path.exists() else 0
        temporary = path.with_name(f".{path.name}.saving")
        temporary.write_text(text)
        stamp = max(time.time_ns(), previous + 1_000_000_000)
        os.utime(temporary, ns=(stamp, stamp))
        os.replace(temporary, path)

    def keys(self, prefix: str = "sales/") -> set[str]:
        return {b.name for b in self.stack.client.list_blobs("out-push", prefix=prefix)}

    def data_keys(self) -> set[str]:
        return {k for k in self.keys() if "/_" not in k}

    def frame(self, key: str) -> pd.DataFrame:
        data = self.stack.client.bucket("out-push").blob(key).download_as_bytes()
        return pd.read_parquet(io.BytesIO(data))

    def runs(self, trigger: str | None = None) -> list[dict[str, Any]]:
        bucket = self.stack.client.bucket("out-push")
        found = [
            json.loads(bucket.blob(k).download_as_bytes())
            for k in self.keys("sales/_runs/")
            if k.count("/") == 2 and k.endswith(".json")
        ]
        return sorted(
            (r for r in found if trigger is None or r["trigger"] == trigger),
            key=lambda r: r["run_id"],
        )

    def dest(self) -> Any:
        return open_storage("gs://out-push/sales")

    def record(self) -> ChannelRecord:
        return ChannelRecord.load(self.dest(), "sales")

    def settle(self) -> None:
        assert self.drive.watch.wait_idle(TIMEOUT)
        assert self.stack.pubsub.wait_idle(TIMEOUT)

    def schedule(self) -> None:
        delivery = self.stack.fire_schedule(None)
        assert delivery.ok, delivery.text


@pytest.fixture(scope="module")
def gcp(gcs_emulator: GcsEmulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcpPush]:
    root = tmp_path_factory.mktemp("gcp-push") / "drive"
    (root / "sales").mkdir(parents=True)
    (root / "sales" / "q1.csv").write_text("region,units\nnorth,3\n")
    stack = GcpDevStack(
        config=CONFIG,
        drive_root=root,
        gcs_url=gcs_emulator.url,
        input_bucket="in-push",
        output_bucket="out-push",
        watch=False,
        push=True,
        entry_points=("on_schedule",),
        extra_env={"DRIVEPIPE_CHANNEL_HOURS": "24"},
        printer=lambda line: None,
    )
    with pytest.MonkeyPatch.context() as env, stack:
        for name, value in stack.function_env().items():
            env.setenv(name, value)  # this process reads the same stores as the functions
        _load.cache_clear()
        push = GcpPush(stack, root)
        push.settle()
        yield push
    _load.cache_clear()


def test_the_first_tick_opened_a_channel_to_the_function(gcp: GcpPush) -> None:
    current = gcp.record().current
    assert current is not None and current.address == gcp.stack.url("drive_notifications") + "/"
    assert {c.id for c in gcp.drive.watch.open_channels()} == {current.id}
    assert current.token_ref.startswith("gcp-sm:projects/local/secrets/")
    assert key("sales/q1") in gcp.data_keys()  # ...and reconciled the lake


def test_an_edit_a_move_and_a_delete_reach_the_lake(gcp: GcpPush) -> None:
    gcp.settle()
    schedules = len(gcp.runs("scheduler"))
    gcp.write("sales/push/a.csv", "region,units\nnorth,1\n")
    wait_for(lambda: key("sales/push/a") in gcp.data_keys(), "the new file's output")
    gcp.write("sales/push/a.csv", "region,units\nnorth,1\nsouth,2\n")
    wait_for(lambda: len(gcp.frame(key("sales/push/a"))) == 2, "the edit")
    (gcp.root / "sales" / "moved").mkdir()
    os.rename(gcp.root / "sales/push/a.csv", gcp.root / "sales/moved/a.csv")
    moved = key("sales/moved/a")
    wait_for(
        lambda: moved in (keys := gcp.data_keys()) and key("sales/push/a") not in keys,
        "the move",
    )
    (gcp.root / "sales/moved/a.csv").unlink()
    wait_for(lambda: moved not in gcp.data_keys(), "the delete")
    gcp.settle()
    assert len(gcp.runs("scheduler")) == schedules
    statuses = {rec["status"] for run in gcp.runs("push") for rec in run["inputs"]}
    assert {"written", "moved", "removed"} <= statuses


def test_a_burst_of_50_notifications_makes_at_most_two_syncs(gcp: GcpPush) -> None:
    gcp.settle()
    before, sent_before = len(gcp.runs("push")), len(gcp.drive.watch.sent("change"))
    for n in range(50):
        gcp.write(f"sales/burst/f{n:02d}.csv", f"region,units\nnorth,{n + 1}\n")
    gcp.drive.poll_changes()
    wanted = {key(f"sales/burst/f{n:02d}") for n in range(50)}
    wait_for(lambda: wanted <= gcp.data_keys(), "all 50 outputs")
    gcp.settle()
    delivered = gcp.drive.watch.sent("change")[sent_before:]
    assert len(delivered) >= 50 and {d.status for d in delivered} == {200}
    assert 1 <= len(gcp.runs("push")) - before <= 2


def test_forged_unknown_and_replayed_notifications_change_nothing(gcp: GcpPush) -> None:
    gcp.write("sales/forged/genuine.csv", "region,units\nnorth,1\n")  # one real notification
    wait_for(lambda: key("sales/forged/genuine") in gcp.data_keys(), "a real change")
    gcp.settle()
    current = gcp.record().current
    seen = pending.requested(gcp.dest(), "sales")
    assert current is not None and seen is not None
    lake, runs, published = gcp.data_keys(), len(gcp.runs()), gcp.stack.pubsub.stats.published
    genuine = {
        "X-Goog-Channel-ID": current.id,
        "X-Goog-Channel-Token": channel_secrets.read_token(current.token_ref),
        "X-Goog-Resource-ID": current.resource_id,
        "X-Goog-Resource-State": "change",
        "X-Goog-Message-Number": str(max(seen.seen.values())),
    }
    url = gcp.stack.url("drive_notifications")
    for change, status in [
        ({"X-Goog-Channel-Token": "guessed"}, 403),
        ({"X-Goog-Channel-ID": "drivepipe-" + "e" * 32}, 403),
        ({}, 200),  # the last accepted number again
        ({"X-Goog-Message-Number": "1"}, 200),
    ]:
        answer = requests.post(url, headers={**genuine, **change}, timeout=30)
        assert answer.status_code == status, answer.text
        assert genuine["X-Goog-Channel-Token"] not in answer.text
    big = requests.post(url, headers=genuine, data=b"x" * 5000, timeout=30)
    assert big.status_code == 413
    assert gcp.stack.pubsub.stats.published == published  # nothing handed off
    assert pending.requested(gcp.dest(), "sales") == seen
    assert gcp.data_keys() == lake and len(gcp.runs()) == runs
    bucket = gcp.stack.client.bucket("out-push")
    for name in gcp.keys(""):  # manifests, state, the channel record, outputs: no token
        data = bucket.blob(name).download_as_bytes()
        assert genuine["X-Goog-Channel-Token"].encode() not in data, name


def test_the_schedule_renews_the_channel_with_no_gap(gcp: GcpPush) -> None:
    gcp.settle()
    old = gcp.record().current
    assert old is not None
    gcp.write("sales/renew/before.csv", "region,units\nnorth,1\n")
    gcp.schedule()
    new = gcp.record().current
    assert new is not None and new.id != old.id
    history = gcp.drive.watch.history
    assert history.index(("opened", new.id)) < history.index(("stopped", old.id))
    gcp.write("sales/renew/after.csv", "region,units\nnorth,2\n")
    wanted = {key("sales/renew/before"), key("sales/renew/after")}
    wait_for(lambda: wanted <= gcp.data_keys(), "both changes, across the renewal")
    gcp.settle()
    assert new.id in {d.channel_id for d in gcp.drive.watch.sent("change")}


def test_a_dropped_notification_is_healed_by_the_next_reconcile(gcp: GcpPush) -> None:
    (gcp.root / "sales" / "dropped").mkdir()
    gcp.drive.poll_changes()
    gcp.settle()
    pushes = len(gcp.runs("push"))
    gcp.drive.watch.faults.drop_next()
    gcp.write("sales/dropped/x.csv", "region,units\nnorth,7\n")
    gcp.drive.poll_changes()
    gcp.settle()
    assert gcp.drive.watch.sent("change")[-1].status is None
    assert key("sales/dropped/x") not in gcp.data_keys()
    assert len(gcp.runs("push")) == pushes
    scheduled = len(gcp.runs("scheduler"))
    gcp.schedule()
    assert key("sales/dropped/x") in gcp.data_keys()
    # The schedule's run wrote it (run ids sort by second, then at random: count, not order).
    assert len(gcp.runs("scheduler")) == scheduled + 1
