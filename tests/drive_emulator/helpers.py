"""Helpers for the emulator tests: the test tree and small HTTP wrappers."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import requests

from devstack.drive_emulator import DriveEmulator

SAMPLES = Path(__file__).resolve().parents[2] / "devstack" / "samples" / "drive"
KEY = "test-key"
BIG_SIZE = 300_000


def big_bytes(seed: int = 0, size: int = BIG_SIZE) -> bytes:
    """Deterministic, non-repeating bytes (so ranges and corruption are detectable)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def build_tree(root: Path) -> Path:
    """The bundled samples plus edge cases: duplicate names, overrides, big files, quotes."""
    shutil.copytree(SAMPLES, root)
    (root / "big").mkdir()
    for i in range(4):
        (root / "big" / f"blob_{i}.bin").write_bytes(big_bytes(i))
    dupes = root / "dupes"
    dupes.mkdir()
    (dupes / "a.csv").write_bytes(b"x\n1\n")
    (dupes / "b.csv").write_bytes(b"x\n2\n")
    (dupes / "locked.csv").write_bytes(b"x\n3\n")
    (dupes / "fixed.csv").write_bytes(b"x\n4\n")
    overrides: dict[str, Any] = {
        "entries": {
            "a.csv": {"name": "report.csv"},
            "b.csv": {"name": "report.csv", "modifiedTime": "2020-01-01T00:00:00.000Z"},
            "locked.csv": {"canDownload": False},
            "fixed.csv": {"id": "fixed-id-123", "mimeType": "text/plain"},
        }
    }
    (dupes / ".drive.json").write_text(json.dumps(overrides))
    (root / "quotes").mkdir()
    (root / "quotes" / "O'Brien report.csv").write_bytes(b"a\n1\n")
    (root / "quotes" / "back\\slash.csv").write_bytes(b"a\n2\n")
    (root / "wide.gsheet.xlsx").write_bytes((SAMPLES / "finance" / "budget_2024.xlsx").read_bytes())
    return root


def call(
    session: requests.Session,
    emulator: DriveEmulator,
    path: str,
    *,
    key: str | None = KEY,
    headers: dict[str, str] | None = None,
    **params: Any,
) -> requests.Response:
    """GET {emu.url}/{path} with an API key (unless key=None) and query parameters."""
    if key is not None:
        params["key"] = key
    return session.get(f"{emulator.url}/{path}", params=params, headers=headers, timeout=30)


def error_of(response: requests.Response) -> dict[str, Any]:
    """The single `errors[0]` entry, after checking the overall error shape."""
    body = response.json()["error"]
    assert body["code"] == response.status_code
    assert body["message"] == body["errors"][0]["message"]
    return body["errors"][0]


def list_all(
    session: requests.Session, emulator: DriveEmulator, **params: Any
) -> tuple[list[dict[str, Any]], int]:
    """Follow nextPageToken to the end; returns (files, pages)."""
    files: list[dict[str, Any]] = []
    pages = 0
    token = None
    while True:
        extra = {"pageToken": token} if token else {}
        response = call(session, emulator, "files", **params, **extra)
        assert response.status_code == 200, response.text
        body = response.json()
        files += body["files"]
        pages += 1
        token = body.get("nextPageToken")
        if not token:
            return files, pages
