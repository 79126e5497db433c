"""Integration: batched parent queries, and their repair when Drive answers them partially."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.drive import ApiKeyAuth, DriveClient
from shared.log import configure
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


def test_listing_warnings_and_request_debug_lines_reach_the_json_log(
    emulator_api, client_for, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Drive's warnings go through the drivepipe logger (JSON in the cloud), not Python's
    last-resort handler; at DEBUG each request is one line with path, status and time."""
    _tree(tmp_path)
    configure("DEBUG", json_lines=True)
    try:
        faults = emulator_api.FaultConfig(incomplete_batches="flagged")
        with emulator_api.DriveEmulator(tmp_path, faults=faults) as emu:
            # concurrency 1: 2 walk workers, so folders share (partially answered) queries
            auth = ApiKeyAuth("k3y-that-must-not-leak")
            with DriveClient(auth, base_url=emu.url, concurrency=1) as client:
                list(client.walk(emu.root_id))
    finally:
        configure("INFO", json_lines=False)
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    drive = [line for line in lines if line["logger"] == "drivepipe.drive"]
    warnings = [line for line in drive if line["severity"] == "WARNING"]
    assert any("incomplete" in line["message"] for line in warnings)
    requests = [line for line in drive if line["message"] == "drive request"]
    assert requests and all(line["status"] == 200 and line["ms"] >= 0 for line in requests)
    assert {line["path"] for line in requests} >= {"files", f"files/{emu.root_id}"}
    assert "k3y-that-must-not-leak" not in json.dumps(lines)
