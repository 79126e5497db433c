"""Exports carry no checksum: each is verified (a second read for csv, the zip's CRC-32s for
xlsx) and read again on a mismatch, so the emulator's ``corrupt`` fault never gets through."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import openpyxl
import pytest

from shared.drive import DriveFile, FetchResult
from shared.errors import DriveError
from tests.drive.conftest import write_tree

SHEETS = 25


def sheets(root: Path) -> dict[str, bytes]:
    """25 native Sheets whose cells are numbers (a flipped byte changes a value)."""
    tree = {}
    for n in range(SHEETS):
        body = "id,amount\n" + "".join(f"{i},{n * 100 + i}\n" for i in range(40))
        tree[f"s{n:02d}.gsheet.csv"] = body
    write_tree(root, tree)
    return {name.removesuffix(".gsheet.csv"): body.encode() for name, body in tree.items()}


def clean_exports(emulator_api, client_for, root: Path, fmt: str) -> dict[str, bytes]:
    with emulator_api.DriveEmulator(root) as emu:
        client = client_for(emu.url)
        files = list(client.walk(emu.root_id))
        out = {}
        for file in files:
            buffer = io.BytesIO()
            client.fetch(file, buffer, sheet_format=fmt)
            out[file.path] = buffer.getvalue()
    return out


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_corrupted_exports_are_never_returned(
    emulator_api, client_for, tmp_path: Path, fmt: str
) -> None:
    sheets(tmp_path)
    truth = clean_exports(emulator_api, client_for, tmp_path, fmt)
    faults = emulator_api.FaultConfig(rate=0.3, kinds=("corrupt",), seed=5)
    with emulator_api.DriveEmulator(tmp_path, faults=faults) as emu:
        client = client_for(emu.url)
        files: list[DriveFile] = list(client.walk(emu.root_id))
        assert len(files) == SHEETS and all(f.is_sheet for f in files)
        buffers: dict[str, io.BytesIO] = {}

        def open_dest(file: DriveFile) -> io.BytesIO:
            buffers[file.path] = _Keep()
            return buffers[file.path]

        results = dict(client.fetch_many(files, open_dest, sheet_format=fmt))
        corrupted = emu.stats.snapshot()["faults"].get("corrupt", 0)
    assert corrupted >= SHEETS // 4  # the fault really hit many exports
    verified = 0
    for file, result in results.items():
        if isinstance(result, DriveError):  # never verified: fails, to be fetched next run
            assert result.reason == "checksumMismatch" and result.retryable
            assert "could not be verified" in str(result)
            continue
        assert isinstance(result, FetchResult) and result.exported
        assert values(buffers[file.path].kept, fmt) == values(truth[file.path], fmt), file.path
        verified += 1
    assert verified >= SHEETS - 3
    assert client.stats.retries["exportMismatch"] > 0


def values(data: bytes, fmt: str) -> list[list[str]]:
    """The cells of an export (an xlsx's zip headers hold render times: compare values)."""
    if fmt == "csv":
        return [line.split(",") for line in data.decode().splitlines()]
    sheet = openpyxl.load_workbook(io.BytesIO(data)).worksheets[0]
    return [[str(c.value) for c in row] for row in sheet.iter_rows()]


def test_an_xlsx_export_is_checked_member_by_member(tmp_path: Path) -> None:
    """The zip check itself: a flipped byte in a member fails its CRC-32."""
    from shared.drive.download import _zip_problem

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("xl/worksheets/sheet1.xml", "<v>26</v>" * 10)
    data = bytearray(buffer.getvalue())
    assert _zip_problem(io.BytesIO(bytes(data)), 0, len(data)) == ""
    at = bytes(data).index(b"26")
    data[at + 1] ^= 0x40  # "26" -> "2v"
    problem = _zip_problem(io.BytesIO(bytes(data)), 0, len(data))
    assert "sheet1.xml" in problem or "not an intact xlsx" in problem


class _Keep(io.BytesIO):
    """A BytesIO whose bytes survive fetch_many closing it."""

    kept = b""

    def close(self) -> None:
        self.kept = self.getvalue()
        super().close()
