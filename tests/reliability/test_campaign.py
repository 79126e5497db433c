"""The campaign's short mode, as CI runs it: every row reads its outputs back, nothing lost,
duplicated or stale, no check failed, and the kills ran on all three backends."""

from __future__ import annotations

import json

import pytest

from bench.campaign import COLUMNS, KILL_SCENARIO, main, own_peak_kb, plan
from bench.campaign_scenarios import SCENARIOS


@pytest.mark.slow
@pytest.mark.timeout(1800)  # about 2 min on an idle 2-core box, 5 min under a load of 20
def test_short_campaign_loses_and_duplicates_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--json"])
    out = capsys.readouterr().out
    assert "| " + " | ".join(COLUMNS) + " |" in out  # the table is printed
    rows = json.loads(out[out.index("\n[") + 1 :])
    assert [(r["scenario"], r["backend"]) for r in rows] == plan(list(SCENARIOS), None)
    for row in rows:
        assert "error" not in row, row
        assert row["problems"] == [], row
        assert row["lost"] == row["duplicates"] == row["stale"] == 0, row
        assert row["inputs"] > 0 and row["written"] + row["failed_expected"] == row["inputs"], row
        assert row["peak_mb"] > 0 and row["seconds"] > 0
    assert code == 0
    kills = {r["backend"] for r in rows if r["scenario"] == KILL_SCENARIO}
    assert kills == {"local", "s3", "gcs"}
    corpus = next(r for r in rows if r["scenario"].startswith("hostile corpus"))
    assert corpus["failed_expected"] >= 10  # the hostile files really failed, each as expected
    assert corpus["peak_mb"] < 600  # issue 19's target, with the default limits
    overlap = next(r for r in rows if r["scenario"] == "overlapping syncs")
    assert overlap["note"].startswith("second refused")


def test_a_rows_peak_is_its_own_not_its_parents() -> None:
    """A child started from a big parent reports its own peak: ``ru_maxrss`` would report the
    parent's (Linux copies it at fork and keeps it across exec)."""
    import subprocess
    import sys

    ballast = bytearray(300 * 1024 * 1024)  # this process' peak is now over 300 MB
    ballast[::4096] = b"x" * len(ballast[::4096])  # touched, so resident
    code = "from bench.campaign import own_peak_kb; print(own_peak_kb())"
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert own_peak_kb() > 300 * 1024
    assert int(child.stdout) < 200 * 1024, child.stdout  # an interpreter, not the parent
    del ballast


def test_a_failing_row_fails_the_campaign() -> None:
    from bench.campaign import failed

    clean = {"lost": 0, "duplicates": 0, "stale": 0, "problems": []}
    assert not failed(clean)
    for key, value in (("lost", 1), ("duplicates", 1), ("stale", 3), ("problems", ["x"])):
        assert failed({**clean, key: value})
    assert failed({**clean, "error": "timed out after 300 s"})
