"""Faults from Drive (errors, resets, damaged bodies, latency) and from S3 mid-run.

Expected: every input ends written or failed with a reason, a written output always holds the
right data, the state never claims a missing output, and a re-run finishes the rest without
redoing finished work.
"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest

from devstack.drive_emulator import DriveEmulator, FaultConfig
from devstack.faultproxy import FaultProxy
from devstack.servers import MotoServer
from shared.drive import DriveClient
from shared.drive.retry import RetryPolicy
from shared.errors import StorageError
from shared.run.manifest import InputRecord
from shared.run.sync import SyncRequest, run_sync
from shared.storage import open_storage
from tests.reliability.conftest import make_pipeline
from tests.reliability.helpers import data_keys, missing_outputs, state_entries

FAST_RETRY = RetryPolicy(max_attempts=3, base_delay=0.005, max_delay=0.02)


def fill(root: Path, count: int) -> None:
    """``count`` CSVs whose rows say which file they came from (to catch mixed-up content)."""
    for n in range(count):
        rows = "".join(f"{n},{i}\n" for i in range(50))
        (root / f"f{n:03d}.csv").write_text("file,row\n" + rows)


def check_outputs(dest_url: str) -> None:
    """Every output parses completely and holds exactly its own file's rows."""
    dest = open_storage(dest_url)
    for key in data_keys(dest):
        frame = pd.read_parquet(io.BytesIO(dest.read(key)))
        n = int(key.rsplit("/", 1)[-1].removeprefix("f").removesuffix(".parquet"))
        assert frame["file"].tolist() == [n] * 50, key
        assert frame["row"].tolist() == list(range(50)), key


def test_drive_faults_lose_nothing_and_a_rerun_finishes_the_rest(
    emulator: DriveEmulator, drive_root: Path, tmp_path: Path
) -> None:
    fill(drive_root, 40)
    dest_url = str(tmp_path / "dest")
    pipeline = make_pipeline(dest_url, emulator.root_id, concurrency=4)
    emulator.set_faults(
        FaultConfig(rate=0.35, seed=11, latency_spike_s=0.05, latency_spike_rate=0.1)
    )
    faulty = DriveClient.from_env(retry=FAST_RETRY)
    first = run_sync(SyncRequest(pipeline=pipeline, checkpoint_every=5), drive=faulty)

    assert sum(emulator.stats.snapshot()["faults"].values()) > 0
    for record in first.inputs:
        assert record.status in ("written", "failed"), record
        if record.status == "failed":
            assert record.error and record.error.startswith("download failed"), record
    written = {r.path for r in first.inputs if r.status == "written"}
    dest = open_storage(dest_url)
    assert missing_outputs(dest, "rel") == []
    check_outputs(dest_url)

    emulator.set_faults(FaultConfig())
    second = run_sync(SyncRequest(pipeline=pipeline), drive=DriveClient.from_env())
    statuses = {r.path: r.status for r in second.inputs}
    assert all(statuses[p] == "skipped_unchanged" for p in written)
    assert all(s in ("written", "skipped_unchanged") for s in statuses.values())
    assert len(data_keys(dest)) == 40
    check_outputs(dest_url)


def test_s3_going_away_mid_sync_loses_nothing(
    emulator: DriveEmulator,
    drive_root: Path,
    moto_server: MotoServer,
    s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fill(drive_root, 20)
    with FaultProxy("127.0.0.1", moto_server.port) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
        monkeypatch.setenv("DRIVEPIPE_LEASE_SECONDS", "3")
        dest_url = f"s3://{s3_bucket}/dest"
        pipeline = make_pipeline(dest_url, emulator.root_id, concurrency=2)

        def outage(record: InputRecord, done: int, total: int) -> None:
            if done == 8:
                proxy.set_mode("reset")

        with pytest.raises(StorageError):
            run_sync(SyncRequest(pipeline=pipeline, checkpoint_every=1), progress=outage)
        assert proxy.resets > 0
        proxy.set_mode("pass")
        dest = open_storage(dest_url)
        checkpointed = state_entries(dest, "rel")
        assert 1 <= len(checkpointed) <= 8
        assert missing_outputs(dest, "rel") == []

        # The failed run could not release its lease either; it expires, then a re-run takes it.
        rerun = run_sync(SyncRequest(pipeline=pipeline, lock_wait_seconds=10))
        counts = rerun.counts()
        assert counts["skipped_unchanged"] == len(checkpointed)
        assert counts["written"] == 20 - len(checkpointed)
        assert missing_outputs(dest, "rel") == []
        check_outputs(dest_url)
