"""The state is truthful at every instant: a kill anywhere leaves no entry claiming a missing
object, and the next run removes what the dead one meant to remove.

Real ``drivepipe sync`` processes, killed with SIGKILL: by a step that dies on one input
(no hook needed, so this runs on any version), and at each crash point of
:mod:`shared.crashpoints` (``DRIVEPIPE_CRASH_AT``).
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from devstack.drive_emulator import DriveEmulator
from shared.cli import main as cli_main
from shared.storage import Storage, layout, open_storage
from tests.reliability.helpers import missing_outputs, state_entries, toml_dumps
from tests.reliability.lake import Row, audit, leftover_temp_files, tagged_rows, write_tagged_csv

REPO = Path(__file__).resolve().parents[2]
RUN_TIMEOUT = 120  # a cap for a hung child, not a margin
# Where the table layout (the default) puts the workbook's sheets and b.csv's rows.
S1_KEY = layout.table_output_key(layout.table_name("rel", "S1"), "book.xlsx", ".parquet")
S2_KEY = layout.table_output_key(layout.table_name("rel", "S2"), "book.xlsx", ".parquet")
B_KEY = layout.table_output_key("rel", "b.csv", ".parquet")


def workbook(path: Path, sheets: dict[str, str]) -> dict[str, list[Row]]:
    """An xlsx with one sheet per name, each of 5 rows tagged ``tag``; expected rows by sheet."""
    with pd.ExcelWriter(path) as writer:
        for sheet, tag in sheets.items():
            frame = pd.DataFrame({"file": [tag] * 5, "row": list(range(5))})
            frame.to_excel(writer, sheet_name=sheet, index=False)
    return {f"{path.stem}/{sheet}": tagged_rows(tag, 5) for sheet, tag in sheets.items()}


def write_config(tmp_path: Path, folder: str, dest: str, **extra: object) -> Path:
    body = {
        "source": {"folder_id": folder},
        "output": {"url": dest},
        "read": {"excel": {"sheets": "all"}},
        "concurrency": 1,
        "steps": [{"op": "custom", "function": "tests.reliability.poison_steps:die_on_poison"}],
        **extra,
    }
    settings = {"custom_step_modules": ["tests.reliability.poison_steps"]}
    path = tmp_path / "drivepipe.toml"
    path.write_text(toml_dumps({"settings": settings, "pipelines": {"rel": body}}))
    return path


def run_cli(config: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``drivepipe sync`` in a child process (checkpoints only at the end unless set)."""
    environment = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "DRIVEPIPE_CHECKPOINT_SECONDS": "600",
        **env,
    }
    command = [sys.executable, "-m", "shared.cli", "sync", "--config", str(config), "--json"]
    return subprocess.run(
        command, env=environment, cwd=REPO, capture_output=True, text=True, timeout=RUN_TIMEOUT
    )


def expire_sync_lease(dest: Storage) -> None:
    """A killed run's lease would expire after its TTL; expire it now instead of waiting."""
    for info in list(dest.list(layout.lock_prefix(layout.sync_lock("rel")))):
        dest.delete(info.key)


def test_a_workbook_losing_a_sheet_then_a_kill_leaves_no_claim_on_a_deleted_output(
    emulator: DriveEmulator, drive_root: Path, tmp_path: Path
) -> None:
    dest_url = str(tmp_path / "dest")
    config = write_config(tmp_path, emulator.root_id, dest_url)
    workbook(drive_root / "book.xlsx", {"S1": "s1", "S2": "s2"})
    write_tagged_csv(drive_root / "zz.csv", "zz", 3)
    assert cli_main(["sync", "--config", str(config), "--json"]) == 0
    dest = open_storage(dest_url)
    assert dest.exists(S2_KEY)

    # The workbook shrinks to one sheet; the input after it kills the process (exit 137)
    # once the workbook is processed and before any state save.
    expected = workbook(drive_root / "book.xlsx", {"S1": "s1-v2"})
    (drive_root / "zz.csv").write_text("poison,row\n1,1\n")
    died = run_cli(config)
    assert died.returncode == 137, died.stderr[-2000:]
    s1 = pd.read_parquet(io.BytesIO(dest.read(S1_KEY)))
    assert s1["file"].tolist() == ["s1-v2"] * 5  # the workbook was processed before the kill

    assert missing_outputs(dest, "rel") == []  # the state names S2's output, so it is there
    (book,) = (e for e in state_entries(dest, "rel").values() if e["path"] == "book.xlsx")
    assert S2_KEY in book["output_keys"]

    expected["zz"] = write_tagged_csv(drive_root / "zz.csv", "zz", 4)
    expire_sync_lease(dest)
    assert cli_main(["sync", "--config", str(config), "--json"]) == 0
    assert not dest.exists(S2_KEY)
    lake = audit(dest, expected)
    assert lake.ok and lake.correct == 2, lake.summary()


# ---- a kill at every crash point ------------------------------------------------------------
# (point, hit): where the child dies. The second sync below changes a workbook (one sheet
# fewer), renames a file, deletes one and edits one, with a checkpoint after every input, so
# each point is reached.
CRASHES = [
    ("processing", 2),
    ("outputs_written", 1),
    ("outputs_written", 3),
    ("state_saved", 1),
    ("state_saved", 2),
    ("mirror_saved", 1),
    ("before_manifest", 1),
    ("mid_write", 1),
    ("mid_write", 2),
]


@pytest.mark.parametrize(("point", "hit"), CRASHES, ids=[f"{p}-{n}" for p, n in CRASHES])
def test_a_kill_at_any_crash_point_leaves_the_state_truthful(
    emulator: DriveEmulator, drive_root: Path, tmp_path: Path, point: str, hit: int
) -> None:
    dest_url = str(tmp_path / "dest")
    config = write_config(tmp_path, emulator.root_id, dest_url)
    workbook(drive_root / "book.xlsx", {"S1": "s1", "S2": "s2"})
    for name in ("a", "b", "c", "d"):
        write_tagged_csv(drive_root / f"{name}.csv", name, 5)
    assert cli_main(["sync", "--config", str(config), "--json"]) == 0
    dest = open_storage(dest_url)

    expected = workbook(drive_root / "book.xlsx", {"S1": "s1-v2"})  # S2 goes
    (drive_root / "a.csv").rename(drive_root / "a2.csv")  # a move: outputs re-keyed
    (drive_root / "b.csv").unlink()  # a removal
    expected["c"] = write_tagged_csv(drive_root / "c.csv", "c-v2", 6)  # an edit
    expected["d"] = write_tagged_csv(drive_root / "d.csv", "d-v2", 2)  # an edit, fewer rows
    expected["a"] = tagged_rows("a", 5)
    crashed = run_cli(config, DRIVEPIPE_CRASH_AT=f"{point}:{hit}", DRIVEPIPE_CHECKPOINT_EVERY="1")
    assert crashed.returncode == -signal.SIGKILL, (point, crashed.stdout, crashed.stderr[-2000:])

    assert missing_outputs(dest, "rel") == []
    after_kill = audit(dest, {})
    assert after_kill.unreadable == []  # nothing partial at a final key
    if point == "mid_write":
        assert leftover_temp_files(tmp_path / "dest")  # the kill did land mid-write

    expire_sync_lease(dest)
    assert cli_main(["sync", "--config", str(config), "--json"]) == 0
    lake = audit(dest, expected)
    assert lake.ok and lake.correct == len(expected), lake.summary()
    assert not dest.exists(B_KEY) and not dest.exists(S2_KEY)
    assert state_entries(dest, "rel") and not _pending(dest)


def _pending(dest: Storage) -> list[str]:
    import json

    document = json.loads(dest.read(layout.sync_state_key("rel")))
    pending: list[str] = document.get("pending_deletes", [])
    return pending
