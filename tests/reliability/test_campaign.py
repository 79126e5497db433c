"""The campaign's short mode, as CI runs it: nothing lost, nothing processed twice."""

from __future__ import annotations

import json

import pytest

from bench.campaign import COLUMNS, main
from bench.campaign_scenarios import SCENARIOS


def test_short_campaign_loses_and_duplicates_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--json"])
    out = capsys.readouterr().out
    assert "| " + " | ".join(COLUMNS) + " |" in out  # the table is printed
    rows = json.loads(out[out.index("\n[") + 1 :])
    assert [r["scenario"] for r in rows] == list(SCENARIOS)
    for row in rows:
        assert "error" not in row, row
        assert row["lost"] == 0, row
        assert row["duplicates"] == 0, row
        assert row["inputs"] > 0 and row["written"] + row["failed_expected"] == row["inputs"], row
        assert row["peak_mb"] > 0 and row["seconds"] > 0
    assert code == 0
    corpus = next(r for r in rows if r["scenario"].startswith("bad-input"))
    assert corpus["failed_expected"] > 0  # the hostile files really failed, as expected
    overlap = next(r for r in rows if r["scenario"] == "overlapping syncs")
    assert overlap["note"].startswith("second refused")
