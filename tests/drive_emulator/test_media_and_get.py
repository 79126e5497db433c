"""files.get metadata and alt=media downloads: ranges, refusals, disk changes, concurrency."""

from __future__ import annotations

import hashlib
import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from requests.adapters import HTTPAdapter

from devstack.drive_emulator import DriveEmulator, FaultConfig
from tests.drive_emulator.helpers import BIG_SIZE, big_bytes, call, error_of


def test_get_returns_metadata_with_string_size_and_checksums(
    emu: DriveEmulator, http: requests.Session
) -> None:
    file_id = emu.id_for("big/blob_1.bin")
    body = call(http, emu, f"files/{file_id}", fields="id,name,size,md5Checksum,sha256Checksum")
    data = big_bytes(1)
    assert body.json() == {
        "id": file_id,
        "name": "blob_1.bin",
        "size": str(BIG_SIZE),
        "md5Checksum": hashlib.md5(data).hexdigest(),
        "sha256Checksum": hashlib.sha256(data).hexdigest(),
    }
    default = call(http, emu, f"files/{file_id}").json()
    assert default == {
        "kind": "drive#file",
        "id": file_id,
        "name": "blob_1.bin",
        "mimeType": "application/octet-stream",
    }


def test_root_alias_and_unknown_id(emu: DriveEmulator, http: requests.Session) -> None:
    assert call(http, emu, "files/root", fields="id").json() == {"id": emu.root_id}
    missing = call(http, emu, "files/doesNotExist123")
    assert missing.status_code == 404
    detail = error_of(missing)
    assert detail["reason"] == "notFound"
    assert detail["message"] == "File not found: doesNotExist123."


def test_media_download_streams_exact_bytes(emu: DriveEmulator, http: requests.Session) -> None:
    response = call(http, emu, f"files/{emu.id_for('big/blob_0.bin')}", alt="media")
    assert response.status_code == 200
    assert response.headers["Content-Length"] == str(BIG_SIZE)
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert response.content == big_bytes(0)
    csv = call(http, emu, f"files/{emu.id_for('sales/2024/q1.csv')}", alt="media")
    assert csv.headers["Content-Type"] == "text/csv"
    assert csv.content == (emu.tree.root / "sales/2024/q1.csv").read_bytes()


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [("bytes=0-99", 0, 99), ("bytes=1000-", 1000, BIG_SIZE - 1), ("bytes=-500", BIG_SIZE - 500,
     BIG_SIZE - 1), ("bytes=299990-400000", 299990, BIG_SIZE - 1)],
)  # fmt: skip
def test_range_requests_answer_206(
    emu: DriveEmulator, http: requests.Session, header: str, start: int, end: int
) -> None:
    file_id = emu.id_for("big/blob_2.bin")
    response = call(http, emu, f"files/{file_id}", alt="media", headers={"Range": header})
    assert response.status_code == 206
    assert response.headers["Content-Range"] == f"bytes {start}-{end}/{BIG_SIZE}"
    assert response.content == big_bytes(2)[start : end + 1]


def test_unsatisfiable_range_is_416(emu: DriveEmulator, http: requests.Session) -> None:
    file_id = emu.id_for("big/blob_2.bin")
    response = call(http, emu, f"files/{file_id}", alt="media", headers={"Range": "bytes=999999-"})
    assert response.status_code == 416
    assert response.headers["Content-Range"] == f"bytes */{BIG_SIZE}"
    # the connection stays usable after an error
    assert call(http, emu, f"files/{file_id}", fields="id").status_code == 200


@pytest.mark.parametrize("path", ["targets.gsheet.csv", "README.gdoc.txt", "sales"])
def test_native_files_and_folders_are_not_downloadable(
    emu: DriveEmulator, http: requests.Session, path: str
) -> None:
    response = call(http, emu, f"files/{emu.id_for(path)}", alt="media")
    assert response.status_code == 403
    detail = error_of(response)
    assert detail["reason"] == "fileNotDownloadable"
    assert detail["message"] == (
        "Only files with binary content can be downloaded. Use Export with Docs Editors files."
    )


def test_can_download_false_refuses_the_bytes(emu: DriveEmulator, http: requests.Session) -> None:
    file_id = emu.id_for("dupes/locked.csv")
    meta = call(http, emu, f"files/{file_id}", fields="capabilities/canDownload").json()
    assert meta == {"capabilities": {"canDownload": False}}
    assert call(http, emu, f"files/{file_id}", alt="media").status_code == 403


def test_overrides_id_and_mimetype(emu: DriveEmulator, http: requests.Session) -> None:
    assert emu.id_for("dupes/fixed.csv") == "fixed-id-123"
    body = call(http, emu, "files/fixed-id-123", fields="name,mimeType").json()
    assert body == {"name": "fixed.csv", "mimeType": "text/plain"}


def test_shortcut_metadata_points_at_its_target(emu: DriveEmulator, http: requests.Session) -> None:
    file_id = emu.id_for("shortcuts/latest_sales.shortcut")
    body = call(http, emu, f"files/{file_id}", fields="name,mimeType,shortcutDetails,size").json()
    assert body == {
        "name": "latest_sales",
        "mimeType": "application/vnd.google-apps.shortcut",
        "shortcutDetails": {
            "targetId": emu.id_for("sales/2025/q1.csv"),
            "targetMimeType": "text/csv",
        },
    }


def test_disk_changes_are_reflected(fresh_emu: DriveEmulator, http: requests.Session) -> None:
    path = fresh_emu.tree.root / "sales/2025/q1.csv"
    file_id = fresh_emu.id_for("sales/2025/q1.csv")
    fields = "size,md5Checksum,modifiedTime"
    before = call(http, fresh_emu, f"files/{file_id}", fields=fields).json()
    path.write_bytes(b"Order ID\nSO-1\n")
    later = time.time() + 5
    os.utime(path, (later, later))
    after = call(http, fresh_emu, f"files/{file_id}", fields=fields).json()
    assert after["size"] == "14" != before["size"]
    assert after["md5Checksum"] == hashlib.md5(b"Order ID\nSO-1\n").hexdigest()
    assert after["modifiedTime"] > before["modifiedTime"]
    assert call(http, fresh_emu, f"files/{file_id}", alt="media").content == b"Order ID\nSO-1\n"
    # new files appear, deleted ones disappear
    (fresh_emu.tree.root / "sales/2025/q2.csv").write_bytes(b"x\n")
    new_id = fresh_emu.id_for("sales/2025/q2.csv")
    assert call(http, fresh_emu, f"files/{new_id}", fields="name").json() == {"name": "q2.csv"}
    path.unlink()
    assert call(http, fresh_emu, f"files/{file_id}").status_code == 404


def test_ids_are_stable_across_restarts(tree_root: object, emu: DriveEmulator) -> None:
    with DriveEmulator(emu.tree.root) as again:
        for rel in ("", "sales/2024/q1.csv", "targets.gsheet.csv", "big"):
            assert again.id_for(rel) == emu.id_for(rel)
        assert 28 <= len(again.id_for("big/blob_0.bin")) <= 33


def test_sixteen_parallel_downloads_on_one_pooled_session(
    fresh_emu: DriveEmulator, http: requests.Session
) -> None:
    http.mount("http://", HTTPAdapter(pool_connections=1, pool_maxsize=16))
    ids = [fresh_emu.id_for(f"big/blob_{i % 4}.bin") for i in range(32)]
    expected = {i: hashlib.md5(big_bytes(i)).hexdigest() for i in range(4)}
    fresh_emu.set_faults(FaultConfig(latency_s=0.2))
    fresh_emu.reset_stats()

    def download(index: int) -> str:
        response = call(http, fresh_emu, f"files/{ids[index]}", alt="media")
        response.raise_for_status()
        return hashlib.md5(response.content).hexdigest()

    with ThreadPoolExecutor(16) as pool:
        digests = list(pool.map(download, range(32)))
    assert digests == [expected[i % 4] for i in range(32)]
    stats = fresh_emu.stats.snapshot()
    assert stats["requests"] == {"media": 32}
    assert stats["bytes_sent"] == 32 * BIG_SIZE
    assert stats["max_in_flight"] > 4  # requests were served concurrently, not one by one
