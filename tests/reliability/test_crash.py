"""``drivepipe sync`` killed with SIGKILL mid-run, then run again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from devstack.drive_emulator import DriveEmulator
from shared.run.sync import SyncRequest, run_sync
from shared.storage import open_storage
from tests.reliability.conftest import make_pipeline
from tests.reliability.helpers import missing_outputs, state_entries, toml_dumps
from tests.reliability.test_faults import check_outputs, fill

REPO = Path(__file__).resolve().parents[2]
ALLOWED_DOWNLOADS = 8  # files the killed sync may fetch: more than the 6 it must checkpoint
GATE_TIMEOUT = 60.0  # a cap for a hung test, not a margin: the kill releases the gate


def test_sigkill_mid_sync_then_rerun_completes_without_redoing_work(
    emulator: DriveEmulator, drive_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(drive_root, 40)
    dest_url = str(tmp_path / "dest")
    config = tmp_path / "drivepipe.toml"
    body = {
        "source": {"folder_id": emulator.root_id},
        "output": {"url": dest_url},
        "concurrency": 1,
    }
    config.write_text(toml_dumps({"pipelines": {"rel": body}}))
    # The sync is caught mid-way by construction: the emulator holds every download after the
    # first ALLOWED_DOWNLOADS until the process is killed, so it cannot finish first.
    downloads_open = threading.Event()
    answer_latency = emulator.faults.latency

    def hold_later_downloads() -> float:
        if emulator.stats.requests["media"] > ALLOWED_DOWNLOADS:
            downloads_open.wait(GATE_TIMEOUT)
        return answer_latency()

    monkeypatch.setattr(emulator.faults, "latency", hold_later_downloads)
    env = {
        **os.environ,
        "DRIVEPIPE_CHECKPOINT_EVERY": "1",
        "DRIVEPIPE_LEASE_SECONDS": "2",
        "PYTHONPATH": str(REPO),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "shared.cli", "sync", "--config", str(config), "--json"],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    dest = open_storage(dest_url)
    try:
        deadline = time.monotonic() + 60
        while len(state_entries(dest, "rel")) < 6 and time.monotonic() < deadline:
            assert proc.poll() is None, "the sync ended before it could be killed"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=10)
        downloads_open.set()
    assert proc.returncode == -signal.SIGKILL

    checkpointed = state_entries(dest, "rel")
    assert 6 <= len(checkpointed) < 40
    assert missing_outputs(dest, "rel") == []
    check_outputs(dest_url)  # whatever sits at a final key is complete
    assert not list(dest.list("_runs/"))  # the killed run never got to write its manifest

    pipeline = make_pipeline(dest_url, emulator.root_id)
    # The dead process' lease (2 s TTL) blocks until it expires, then is taken over.
    rerun = run_sync(SyncRequest(pipeline=pipeline, lock_wait_seconds=15))
    counts = rerun.counts()
    assert counts["skipped_unchanged"] == len(checkpointed)
    assert counts["written"] == 40 - len(checkpointed)
    assert counts["failed"] == 0
    assert missing_outputs(dest, "rel") == [] and len(state_entries(dest, "rel")) == 40
    check_outputs(dest_url)
