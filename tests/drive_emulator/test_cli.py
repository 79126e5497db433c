"""`python -m devstack.drive_emulator` serves until terminated, and rejects bad input."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import requests

from devstack.drive_emulator import main
from tests.drive_emulator.helpers import SAMPLES

REPO = Path(__file__).resolve().parents[2]


def test_cli_serves_the_folder_and_stops_on_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "devstack.drive_emulator", "--root", str(SAMPLES), "--port", "0",
         "--page-size-cap", "2"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline().strip() for _ in range(3)]
        values = dict(line.split("=", 1) for line in lines[1:])
        url, root_id = values["DRIVE_API_URL"], values["DRIVE_ROOT_ID"]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/drive/v3")
        body = requests.get(
            f"{url}/files", params={"key": "k", "q": f"'{root_id}' in parents"}, timeout=10
        ).json()
        assert len(body["files"]) == 2 and "nextPageToken" in body
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=10)
    assert code == 0


def test_cli_reports_a_bad_root(tmp_path: Path, capsys: object) -> None:
    assert main(["--root", str(tmp_path / "missing")]) == 2
    assert "not a directory" in capsys.readouterr().err  # type: ignore[attr-defined]
