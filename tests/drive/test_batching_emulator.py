"""Integration: batched parent queries, and their repair when Drive answers them partially."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.drive.conftest import write_tree

FOLDERS = 12


def _tree(root: Path) -> dict[str, bytes]:
    """12 sibling folders of 3 files (two nested one level deeper) and one empty folder."""
    files = {
        f"d{i:02d}/f{j}.csv": f"a\n{i}{j}\n".encode() for i in range(FOLDERS) for j in range(3)
    }
    files["d03/sub/deep.csv"] = b"a\n9\n"
    files["d07/sub/deep.csv"] = b"a\n8\n"
    write_tree(root, files)
    (root / "empty").mkdir()
    return files


def _walk(emulator_api, client_for, root: Path, mode: str | None) -> tuple[set[str], dict]:
    faults = emulator_api.FaultConfig(incomplete_batches=mode)
    with emulator_api.DriveEmulator(root, faults=faults) as emu:
        client = client_for(emu.url, concurrency=1)  # 2 walk workers: folders must share queries
        paths = {file.path for file in client.walk(emu.root_id)}
        return paths, client.stats.snapshot()["listing"]


def test_folders_share_queries_when_drive_answers_in_full(
    emulator_api, client_for, tmp_path: Path
) -> None:
    files = _tree(tmp_path)
    paths, listing = _walk(emulator_api, client_for, tmp_path, None)
    assert paths == set(files)
    assert listing["batched_queries"] >= 2
    # Only the genuinely empty folder (empty/) is checked again on its own.
    assert listing["relisted_folders"] == 1
    assert "incomplete_batches" not in listing


@pytest.mark.parametrize("mode", ["flagged", "silent"])
def test_partial_batched_answers_are_repaired(
    emulator_api, client_for, tmp_path: Path, mode: str
) -> None:
    files = _tree(tmp_path)
    paths, listing = _walk(emulator_api, client_for, tmp_path, mode)
    assert paths == set(files)  # nothing lost although every batch lost all but one parent
    assert listing["relisted_folders"] > 0
    if mode == "flagged":
        # Once flagged, batching stops for the walk: only the batches already sent in
        # parallel with the first one (at most one per walk worker) were batched.
        assert listing["incomplete_batches"] == listing["batched_queries"] <= 2
    else:
        assert "incomplete_batches" not in listing
