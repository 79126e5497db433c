"""Integration: fetch / fetch_many against the Drive emulator on 127.0.0.1."""

from __future__ import annotations

import io
import logging
import threading
from pathlib import Path

import openpyxl
import pytest

from shared.drive import DriveClient, DriveFile, FetchResult, RetryPolicy
from shared.drive.models import XLSX_MIME
from shared.errors import DriveAuthError, DriveError
from tests.drive.conftest import write_tree


def _walk(client: DriveClient, root_id: str) -> dict[str, DriveFile]:
    return {f.path: f for f in client.walk(root_id)}


def test_binary_files_and_sheet_exports(emulator_api, client_for, tmp_path: Path) -> None:
    payload = bytes(range(256)) * 500  # 128 KB over several 16 KB chunks
    write_tree(tmp_path, {"bin/blob.parquet": payload, "Budget.gsheet.csv": "region,n\nnorth,10\n"})
    with emulator_api.DriveEmulator(tmp_path) as emu:
        client = client_for(emu.url, chunk_size=16 * 1024)
        files = _walk(client, emu.root_id)
        dest = io.BytesIO()
        result = client.fetch(files["bin/blob.parquet"], dest)
        assert dest.getvalue() == payload and result.bytes_written == len(payload)
        assert not result.exported and result.attempts == 1
        csv_dest = io.BytesIO()
        csv_result = client.fetch(files["Budget"], csv_dest)
        assert csv_result.exported and csv_result.mime_type == "text/csv"
        assert csv_dest.getvalue().replace(b"\r\n", b"\n") == b"region,n\nnorth,10\n"
        xlsx_dest = io.BytesIO()
        xlsx_result = client.fetch(files["Budget"], xlsx_dest, sheet_format="xlsx")
    assert xlsx_result.mime_type == XLSX_MIME
    xlsx_dest.seek(0)
    sheet = openpyxl.load_workbook(xlsx_dest).worksheets[0]
    rows = [[c.value for c in row] for row in sheet.iter_rows()]
    assert rows[0] == ["region", "n"] and rows[1][0] == "north" and str(rows[1][1]) == "10"


def test_native_doc_is_skipped_and_never_downloaded(emulator_api, client_for, tmp_path) -> None:
    write_tree(tmp_path, {"Notes.gdoc.txt": "words", "a.csv": "a\n"})
    with emulator_api.DriveEmulator(tmp_path) as emu:
        client = client_for(emu.url)
        files = _walk(client, emu.root_id)
        before = client.stats.requests
        results = dict(client.fetch_many(files.values(), lambda f: io.BytesIO()))
        assert client.stats.requests == before + 1  # only a.csv was requested
        error = results[files["Notes"]]
        assert isinstance(error, DriveError) and error.reason == "notDownloadable"
        assert "document" in str(error)
        # Asking for the doc's bytes anyway gets the API's own 403, at once.
        forced = DriveFile(**{**files["Notes"].__dict__, "skip_reason": None})
        with pytest.raises(DriveError) as info:
            client.fetch(forced, io.BytesIO())
    assert info.value.status == 403 and info.value.reason == "fileNotDownloadable"
    assert "Export" in info.value.message and client.stats.total_retries == 0


def test_export_limit_is_a_clear_final_error(emulator_api, client_for, tmp_path) -> None:
    rows = "".join(f"{i},{'x' * 40}\n" for i in range(200))
    write_tree(tmp_path, {"Large.gsheet.csv": "n,text\n" + rows})
    with emulator_api.DriveEmulator(tmp_path, export_limit_bytes=1000) as emu:
        client = client_for(emu.url)
        sheet = _walk(client, emu.root_id)["Large"]
        with pytest.raises(DriveError) as info:
            client.fetch(sheet, io.BytesIO())
    assert info.value.reason == "exportSizeLimitExceeded" and "10 MB" in str(info.value)
    assert client.stats.total_retries == 0


def test_fetch_many_writes_files_and_isolates_failures(emulator_api, client_for, tmp_path) -> None:
    src = tmp_path / "src"
    contents = {f"d{i % 3}/f{i}.csv": f"i\n{i}\n".encode() * (i + 1) for i in range(12)}
    write_tree(src, contents)
    out = tmp_path / "out"
    with emulator_api.DriveEmulator(src) as emu:
        client = client_for(emu.url)
        files = list(client.walk(emu.root_id))
        ghost = DriveFile("missing-id", "ghost.csv", "ghost.csv", "text/csv", 3, None, "", False)

        def open_dest(file: DriveFile) -> io.BufferedRandom:
            path = out / file.path
            path.parent.mkdir(parents=True, exist_ok=True)
            return path.open("w+b")

        results = list(client.fetch_many([*files, ghost], open_dest, concurrency=4))
    assert len(results) == len(contents) + 1
    failures = [(f, r) for f, r in results if isinstance(r, DriveError)]
    assert [f.path for f, _ in failures] == ["ghost.csv"] and failures[0][1].status == 404
    for rel, data in contents.items():
        assert (out / rel).read_bytes() == data


def test_missing_credentials_name_what_to_set(emulator_api, tmp_path) -> None:
    write_tree(tmp_path, {"a.csv": "a\n"})
    with emulator_api.DriveEmulator(tmp_path) as emu, pytest.raises(DriveAuthError) as info:
        DriveClient.from_env({"DRIVE_API_URL": emu.url})
    assert "DRIVE_API_KEY" in str(info.value) and "GOOGLE_APPLICATION_CREDENTIALS" in str(
        info.value
    )


def test_api_key_client_works_and_keeps_the_key_out_of_logs(
    emulator_api, tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    write_tree(tmp_path, {"a.csv": "a\n"})
    with emulator_api.DriveEmulator(tmp_path, api_keys=["AIzaTESTKEY"]) as emu:
        env = {"DRIVE_API_URL": emu.url, "DRIVE_API_KEY": "AIzaTESTKEY"}
        with DriveClient.from_env(env) as client:
            files = list(client.walk(emu.root_id))
            client.fetch(files[0], io.BytesIO())
            assert "AIzaTESTKEY" not in repr(client)
    assert [f.path for f in files] == ["a.csv"]
    # The client side (urllib3 and our own loggers) logged request lines, masked.
    client_logs = [
        r.getMessage() for r in caplog.records if r.name.startswith(("urllib3", "shared"))
    ]
    assert any("key=***" in line for line in client_logs)
    assert not any("AIzaTESTKEY" in line for line in client_logs)


def test_rejected_credentials_fail_at_once_without_leaking(emulator_api, tmp_path) -> None:
    write_tree(tmp_path, {"a.csv": "a\n"})
    with emulator_api.DriveEmulator(tmp_path, api_keys=["good-key"], tokens=["good"]) as emu:
        bad_token = DriveClient.from_env({"DRIVE_API_URL": emu.url, "DRIVE_ACCESS_TOKEN": "bad"})
        with pytest.raises(DriveAuthError) as token_info:
            list(bad_token.walk(emu.root_id))
        bad_key = DriveClient.from_env({"DRIVE_API_URL": emu.url, "DRIVE_API_KEY": "AIzaWRONG"})
        with pytest.raises(DriveAuthError) as key_info:
            list(bad_key.walk(emu.root_id))
    assert token_info.value.status == 401 and "DRIVE_ACCESS_TOKEN" in str(token_info.value)
    assert key_info.value.status == 400 and key_info.value.reason == "keyInvalid"
    assert "AIzaWRONG" not in str(key_info.value) and "DRIVE_API_KEY" in str(key_info.value)
    for client in (bad_token, bad_key):
        assert client.stats.total_retries == 0 and client.stats.max_attempts == 1


def test_read_timeout_is_retried_then_reported(emulator_api, client_for, tmp_path) -> None:
    write_tree(tmp_path, {"a.csv": "a\n"})
    slow = emulator_api.FaultConfig(latency_s=0.4)
    with emulator_api.DriveEmulator(tmp_path, faults=slow) as emu:
        retry = RetryPolicy(max_attempts=2, base_delay=0.001, max_delay=0.001)
        client = client_for(emu.url, timeout=(2.0, 0.05), retry=retry)
        with pytest.raises(DriveError) as info:
            list(client.walk(emu.root_id))
    assert info.value.reason == "timeout" and info.value.retryable
    # Two requests run at the start of a walk (files.get root, files.list root): each retried once.
    assert client.stats.retries == {"timeout": 2} and client.stats.max_attempts == 2


def test_fetch_many_keeps_to_its_concurrency(emulator_api, client_for, tmp_path) -> None:
    write_tree(tmp_path, {f"f{i}.csv": f"{i}\n" for i in range(10)})
    lock = threading.Lock()
    open_now = peak = opened = 0
    # The first three downloads meet before any goes on, so three are open at once however the
    # threads are scheduled; the 0.1 s latency keeps them open long enough to see a fourth.
    first_three = threading.Barrier(3, timeout=30)

    class CountingDest(io.BytesIO):
        def close(self) -> None:
            nonlocal open_now
            with lock:
                open_now -= 1
            super().close()

    def open_dest(file: DriveFile) -> io.BytesIO:
        nonlocal open_now, peak, opened
        with lock:
            open_now += 1
            opened += 1
            peak = max(peak, open_now)
            meet = opened <= 3
        if meet:
            first_three.wait()
        return CountingDest()

    with emulator_api.DriveEmulator(
        tmp_path, faults=emulator_api.FaultConfig(latency_s=0.1)
    ) as emu:
        client = client_for(emu.url)
        files = list(client.walk(emu.root_id))
        results = list(client.fetch_many(files, open_dest, concurrency=3))
    assert all(isinstance(r, FetchResult) for _, r in results) and len(results) == 10
    assert peak == 3 and open_now == 0  # parallel, bounded, and every destination closed
