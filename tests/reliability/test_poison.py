"""A poison pill: a step that kills ``drivepipe sync`` on one input, run again and again.

The first K runs die on it (the platform's retries); the next one quarantines it unprocessed
with the reason "crashed the function K times", writes every other input, and exits 1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from devstack.drive_emulator import DriveEmulator
from shared.storage import Storage, layout, open_storage
from tests.reliability.helpers import data_keys, state_entries, toml_dumps
from tests.reliability.test_faults import check_outputs, fill

REPO = Path(__file__).resolve().parents[2]
K = 3  # DRIVEPIPE_POISON_ATTEMPTS for these runs (the default)
GOOD = 6


def expire_sync_lease(dest: Storage) -> None:
    """A killed run's lease would expire after its TTL; expire it now instead of waiting."""
    for info in list(dest.list(layout.lock_prefix(layout.sync_lock("rel")))):
        dest.delete(info.key)


def test_an_input_that_kills_the_process_k_times_is_quarantined_and_the_rest_written(
    emulator: DriveEmulator, drive_root: Path, tmp_path: Path
) -> None:
    fill(drive_root, GOOD)
    poison_bytes = b"poison,row\n1,1\n"
    (drive_root / "poison.csv").write_bytes(poison_bytes)
    dest_url = str(tmp_path / "dest")
    config = tmp_path / "drivepipe.toml"
    body = {
        "source": {"folder_id": emulator.root_id},
        "output": {"url": dest_url},
        "concurrency": 1,
        "steps": [{"op": "custom", "function": "tests.reliability.poison_steps:die_on_poison"}],
    }
    settings = {"custom_step_modules": ["tests.reliability.poison_steps"]}
    config.write_text(toml_dumps({"settings": settings, "pipelines": {"rel": body}}))
    env = {
        **os.environ,
        "DRIVEPIPE_POISON_ATTEMPTS": str(K),
        "DRIVEPIPE_CHECKPOINT_EVERY": "1",
        "PYTHONPATH": str(REPO),
    }
    command = [sys.executable, "-m", "shared.cli", "sync", "--config", str(config), "--json"]
    dest = open_storage(dest_url)

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command, env=env, cwd=REPO, capture_output=True, text=True, timeout=120
        )

    for crash in range(1, K + 1):
        died = run()
        assert died.returncode == 137, died.stderr[-2000:]
        markers = [json.loads(dest.read(i.key)) for i in dest.list("_state/attempts/rel/")]
        assert [(m["path"], m["count"]) for m in markers] == [("poison.csv", crash)]
        assert not list(dest.list("_runs/"))  # a killed run writes no manifest
        expire_sync_lease(dest)

    done = run()
    assert done.returncode == 1, done.stderr[-2000:]  # some input failed
    summary = json.loads(done.stdout)
    manifest = json.loads(dest.read(layout.run_key(summary["run_id"])))
    records = {r["path"]: r for r in manifest["inputs"]}
    poison = records["poison.csv"]
    assert (poison["status"], poison["error"]) == ("failed", f"crashed the function {K} times")
    assert dest.read(poison["quarantine_key"]) == poison_bytes
    assert all(
        r["status"] in ("written", "skipped_unchanged")
        for p, r in records.items()
        if p != "poison.csv"
    )
    assert sorted(data_keys(dest)) == [f"rel/f{n:03d}.parquet" for n in range(GOOD)]
    check_outputs(dest_url)
    assert not list(dest.list("_state/attempts/"))
    assert len(state_entries(dest, "rel")) == GOOD + 1  # the poison's entry holds its error

    again = run()  # unchanged: reported again, not processed (the process survives)
    assert again.returncode == 1, again.stderr[-2000:]
    rerun = json.loads(dest.read(layout.run_key(json.loads(again.stdout)["run_id"])))
    error = next(r["error"] for r in rerun["inputs"] if r["path"] == "poison.csv")
    assert error.startswith("unchanged since it failed") and error.endswith(f"{K} times")
