"""Native Sheets through a whole sync: a corrupted export never reaches an output, and an
export whose content failed is read once more on the next run before it is reported as
"unchanged since it failed"."""

from __future__ import annotations

import json
from pathlib import Path

from devstack.drive_emulator import DriveEmulator, FaultConfig
from shared.drive import DriveClient
from shared.drive.retry import RetryPolicy
from shared.run.attempts import CRASH_REASON
from shared.run.state import CRASHED
from shared.run.sync import SyncRequest, run_sync
from shared.storage import open_storage
from tests.reliability.conftest import make_pipeline
from tests.reliability.helpers import state_entries
from tests.reliability.lake import Row, audit, tagged_rows

FAST_RETRY = RetryPolicy(max_attempts=4, base_delay=0.005, max_delay=0.02)
SHEETS = 25
FIXED_TIME = "2026-01-02T03:04:05.000Z"  # Drive's version of the sheet, held still


def native_sheets(root: Path) -> dict[str, list[Row]]:
    """25 native Sheets of tagged rows with numbers in them; their expected rows."""
    expected = {}
    for n in range(SHEETS):
        tag = f"s{n:02d}"
        body = "file,row\n" + "".join(f"{tag},{26 + i}\n" for i in range(30))
        (root / f"{tag}.gsheet.csv").write_text(body)
        expected[tag] = [(tag, str(26 + i)) for i in range(30)]
    return expected


def test_corrupted_exports_never_write_wrong_values(
    emulator: DriveEmulator, drive_root: Path, tmp_path: Path
) -> None:
    expected = native_sheets(drive_root)
    dest = open_storage(str(tmp_path / "dest"))
    pipeline = make_pipeline(dest.base_url, emulator.root_id, concurrency=4)
    emulator.set_faults(FaultConfig(rate=0.3, kinds=("corrupt",), seed=3))
    first = run_sync(SyncRequest(pipeline=pipeline), drive=DriveClient.from_env(retry=FAST_RETRY))
    assert emulator.stats.snapshot()["faults"].get("corrupt", 0) > 0
    written = {r.path for r in first.inputs if r.status == "written"}
    assert len(written) >= SHEETS - 3, first.counts()
    for record in first.inputs:  # anything not written failed its download, to be fetched again
        assert record.status == "written" or "could not be verified" in (record.error or "")
    lake = audit(dest, {tag: rows for tag, rows in expected.items() if tag in written})
    assert lake.ok and lake.unexpected_rows == 0, lake.summary()  # no "2É" anywhere

    emulator.set_faults(FaultConfig())
    run_sync(SyncRequest(pipeline=pipeline))
    lake = audit(dest, expected)
    assert lake.ok and lake.correct == SHEETS, lake.summary()


def _hold_version(root: Path, name: str) -> None:
    """Drive reports the same modifiedTime whatever the bytes: one version of the sheet."""
    (root / ".drive.json").write_text(json.dumps({"entries": {name: {"modifiedTime": FIXED_TIME}}}))


def test_an_export_that_failed_is_read_again_next_run(
    emulator: DriveEmulator, drive_root: Path, tmp_path: Path
) -> None:
    _hold_version(drive_root, "t.gsheet.csv")
    (drive_root / "t.gsheet.csv").write_text("file,row\nt,1,extra\n")  # a bad read of it
    dest = open_storage(str(tmp_path / "dest"))
    pipeline = make_pipeline(dest.base_url, emulator.root_id)
    first = run_sync(SyncRequest(pipeline=pipeline))
    assert first.inputs[0].status == "failed"
    (entry,) = state_entries(dest, "rel").values()
    assert entry["error"] and entry["recheck"] is True

    (drive_root / "t.gsheet.csv").write_text("file,row\nt,0\nt,1\n")  # the sheet, read right
    second = run_sync(SyncRequest(pipeline=pipeline))
    record = second.inputs[0]
    assert record.status == "written", record  # not "unchanged since it failed"
    assert "retried" in (record.reason or "")
    assert audit(dest, {"t": tagged_rows("t", 2)}).ok


def test_a_failure_confirmed_on_a_second_read_is_not_read_a_third_time(
    emulator: DriveEmulator, drive_root: Path, tmp_path: Path
) -> None:
    _hold_version(drive_root, "t.gsheet.csv")
    (drive_root / "t.gsheet.csv").write_text("file,row\nt,1,extra\n")
    dest = open_storage(str(tmp_path / "dest"))
    pipeline = make_pipeline(dest.base_url, emulator.root_id)
    run_sync(SyncRequest(pipeline=pipeline))
    again = run_sync(SyncRequest(pipeline=pipeline))  # read again: the same failure
    assert again.inputs[0].status == "failed" and "row 2 has 3 fields" in again.inputs[0].error
    (entry,) = state_entries(dest, "rel").values()
    assert entry["recheck"] is False
    exports = emulator.stats.snapshot()["requests"].get("export", 0)
    third = run_sync(SyncRequest(pipeline=pipeline))
    assert third.inputs[0].error.startswith("unchanged since it failed in run")
    assert emulator.stats.snapshot()["requests"].get("export", 0) == exports  # not fetched


def test_a_poison_pill_is_never_rechecked() -> None:
    assert CRASH_REASON.format(count=3).startswith(CRASHED)
