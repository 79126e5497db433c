"""The README's main command, end to end: `drivepipe demo` against the real local stack."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_demo_syncs_samples_to_s3_and_gcs_and_quarantines_the_bad_file() -> None:
    drivepipe = Path(sys.executable).parent / "drivepipe"
    done = subprocess.run(
        [str(drivepipe), "demo"], cwd=ROOT, capture_output=True, text=True, timeout=240, check=False
    )
    out = done.stdout
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "== pipeline sales: Drive folder → s3://drivepipe-demo/sales" in out
    assert "== pipeline lake: Drive folder → gs://drivepipe-demo/lake" in out
    assert "quarantined: broken/bad.csv → _quarantine/" in out
    assert "sales/region=East/sales__2024__q1.parquet" in out  # the sales table, partitioned
    assert "skipped_unsupported README" in out  # the Google Doc, with its reason
    # the quarantined sample file was told to the SNS topic's subscribers and to the webhook
    sales = out.split("== pipeline sales")[1].split("== pipeline lake")[0]
    sns = sales.split("notification via SNS")[1]
    assert "drivepipe sales: 1 input failed" in sns and "failed:   broken/bad.csv" in sns
    assert "notification via webhook (Slack): drivepipe sales: 1 input failed" in sales
    # the re-run skips everything that was written
    rerun = out.split("== re-run")[1].split("== run history")[0]
    assert "written=" not in rerun and "skipped_unchanged=" in rerun
    history = out.split("== run history")[1]
    assert history.count("RUN ID") == 2 and "failed" in history
    assert "stopping the local stack" in out
