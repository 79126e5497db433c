"""Poison-pill detection: attempt markers on a local destination, and a sync that honours them.

A crash is simulated by calling :meth:`Attempts.begin` without :meth:`Attempts.done`: exactly
what a killed invocation leaves behind. The subprocess test that really kills the process is
tests/reliability/test_poison.py.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from shared.config import Pipeline, parse_config
from shared.drive import DriveClient, DriveFile
from shared.run.attempts import Attempts, crash_reason
from shared.run.mirror import state_key
from shared.run.sync import SyncRequest, run_sync
from shared.storage import open_storage
from shared.storage.layout import attempt_marker_key, is_reserved
from tests.core.conftest import DriveTree

FILE = DriveFile(
    id="f1",
    name="q1.csv",
    path="sales/q1.csv",
    mime_type="text/csv",
    size=10,
    md5="aaa",
    modified_time="2026-01-01T00:00:00.000Z",
    native=False,
)
KEY = state_key(FILE)


def attempts(tmp_path: Path, limit: int = 3, run_id: str = "r1") -> Attempts:
    return Attempts(open_storage(str(tmp_path / "dest")), "p", run_id, limit)


def test_a_clean_attempt_leaves_no_marker(tmp_path: Path) -> None:
    marks = attempts(tmp_path)
    assert marks.begin(KEY, FILE) == 0
    assert marks.count(KEY) == 1
    marker = json.loads(marks.dest.read(marks.marker_key(KEY)))
    assert marker == {
        "key": KEY,
        "path": "sales/q1.csv",
        "md5": "aaa",
        "modified_time": "2026-01-01T00:00:00.000Z",
        "count": 1,
        "run_id": "r1",
    }
    marks.done(KEY)
    assert marks.count(KEY) == 0
    assert marks.begin(KEY, FILE) == 0  # a later run starts again from zero


def test_each_crash_in_a_row_counts_until_the_limit(tmp_path: Path) -> None:
    marks = attempts(tmp_path, limit=3)
    assert [marks.begin(KEY, FILE) for _ in range(3)] == [0, 1, 2]  # three invocations died
    assert marks.count(KEY) == 3
    assert marks.begin(KEY, FILE) == 3  # the fourth: quarantine, the marker is left alone
    assert marks.begin(KEY, FILE) == 3
    assert marks.count(KEY) == 3


def test_a_changed_file_starts_from_zero(tmp_path: Path) -> None:
    marks = attempts(tmp_path)
    marks.begin(KEY, FILE)
    marks.begin(KEY, FILE)
    changed = replace(FILE, md5="bbb", modified_time="2026-01-02T00:00:00.000Z")
    assert marks.begin(KEY, changed) == 0
    assert marks.count(KEY) == 1
    touched = replace(changed, modified_time="2026-01-03T00:00:00.000Z")  # same md5, new mtime
    assert marks.begin(KEY, touched) == 0


def test_an_unreadable_marker_counts_as_none(tmp_path: Path) -> None:
    marks = attempts(tmp_path)
    marks.dest.write(marks.marker_key(KEY), b"{not json")
    assert marks.begin(KEY, FILE) == 0
    assert marks.count(KEY) == 1


def test_markers_are_per_pipeline_and_reserved() -> None:
    key = attempt_marker_key("p", KEY)
    assert key.startswith("_state/attempts/p/") and key.endswith(".json")
    assert is_reserved(key)
    assert attempt_marker_key("q", KEY) != key


def pipeline(url: str) -> Pipeline:
    body = {"source": {"include": ["sales/**"]}, "output": {"url": url}}
    return parse_config({"pipelines": {"sales": body}}).pipelines["sales"]


def test_an_input_k_invocations_died_on_is_quarantined_unprocessed(
    drive_tree: DriveTree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRIVEPIPE_POISON_ATTEMPTS", "2")
    url = str(tmp_path / "out")
    files = {f.path: f for f in DriveClient.from_env().walk(drive_tree.folder_id)}
    poison = files["sales/2024/q1.csv"]
    marks = Attempts(open_storage(url), "sales", "dead-run", 2)
    marks.begin(state_key(poison), poison)  # two invocations died on it
    marks.begin(state_key(poison), poison)

    manifest = run_sync(SyncRequest(pipeline=pipeline(url), folder_id=drive_tree.folder_id))
    records = {r.path: r for r in manifest.inputs}
    bad = records["sales/2024/q1.csv"]
    assert (bad.status, bad.error) == ("failed", crash_reason(2))
    assert bad.output_keys == [] and bad.quarantine_key
    dest = open_storage(url)
    assert dest.read(bad.quarantine_key) == (drive_tree.root / "sales/2024/q1.csv").read_bytes()
    assert records["sales/2024/q2.csv"].status == "written"
    assert not list(dest.list("_state/attempts/"))  # every outcome known: no marker left

    again = run_sync(SyncRequest(pipeline=pipeline(url), folder_id=drive_tree.folder_id))
    record = next(r for r in again.inputs if r.path == "sales/2024/q1.csv")
    assert record.status == "failed"
    assert (
        record.error
        == f"unchanged since it failed in run {manifest.run_id}: crashed the function 2 times"
    )

    # A new version of the file is processed again, from a count of zero.
    drive_tree.write("sales/2024/q1.csv", "order_id,region,units,unit_price\n1,EU,3,2.5\n")
    fixed = run_sync(SyncRequest(pipeline=pipeline(url), folder_id=drive_tree.folder_id))
    assert {r.path: r.status for r in fixed.inputs}["sales/2024/q1.csv"] == "written"
