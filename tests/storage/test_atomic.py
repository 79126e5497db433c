""" "Never a partial object at the final key": writers that die mid-way leave nothing visible."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from devstack.servers import GcsEmulator, MotoServer
from shared.errors import StorageError
from shared.storage import Storage
from shared.storage.local import TEMP_PREFIX, LocalStorage
from tests.storage.helpers import LARGE_SIZE, MIB, FailingStream, open_small_threshold

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_failed_small_write_leaves_nothing(store: Storage) -> None:
    payload = random.Random(3).randbytes(200_000)
    with pytest.raises(StorageError, match="simulated writer failure"):
        store.write("out/part.csv", FailingStream(payload, fail_at=100_000))
    assert not store.exists("out/part.csv")
    assert list(store.list()) == []


def test_failed_large_write_leaves_nothing(store: Storage) -> None:
    payload = random.Random(4).randbytes(LARGE_SIZE)
    with pytest.raises(StorageError, match="simulated writer failure"):
        store.write("out/big.bin", FailingStream(payload, fail_at=LARGE_SIZE - MIB))
    assert not store.exists("out/big.bin")
    assert list(store.list()) == []


def test_failed_overwrite_keeps_previous_object(store: Storage) -> None:
    store.write("out/table.parquet", b"previous complete version")
    payload = random.Random(5).randbytes(LARGE_SIZE)
    with pytest.raises(StorageError):
        store.write("out/table.parquet", FailingStream(payload, fail_at=7 * MIB))
    assert store.read("out/table.parquet") == b"previous complete version"
    assert [info.key for info in store.list()] == ["out/table.parquet"]


def test_local_failed_write_removes_its_temp_file(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)
    with pytest.raises(StorageError):
        store.write("a/b.csv", FailingStream(b"x" * 500_000, fail_at=300_000))
    leftovers = [p.name for p in tmp_path.rglob("*") if p.is_file()]
    assert leftovers == []


def test_local_writer_killed_mid_write_leaves_no_object(tmp_path: Path) -> None:
    """SIGKILL a real writer process mid-stream: the key never appears, list() stays empty."""
    progress = tmp_path / "progress"
    script = textwrap.dedent(
        f"""
        import io, pathlib, time
        from shared.storage.local import LocalStorage

        class SlowStream(io.RawIOBase):
            def __init__(self):
                self.sent = 0
            def readable(self):
                return True
            def seekable(self):
                return True
            def tell(self):
                return self.sent
            def seek(self, offset, whence=0):
                return 10 * 1024 * 1024 if whence == 2 else self.sent
            def read(self, size=-1):
                if self.sent >= 256 * 1024:
                    pathlib.Path({str(progress)!r}).write_text("halfway")
                    time.sleep(60)
                self.sent += 64 * 1024
                return b"x" * 64 * 1024

        LocalStorage({str(tmp_path / "store")!r}).write("out/victim.csv", SlowStream())
        """
    )
    writer = subprocess.Popen([sys.executable, "-c", script], cwd=REPO_ROOT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not progress.exists():
            assert writer.poll() is None, "writer exited before reaching the middle"
            assert time.monotonic() < deadline, "writer never reached the middle"
            time.sleep(0.02)
        os.kill(writer.pid, signal.SIGKILL)
    finally:
        writer.wait(timeout=10)
    store = LocalStorage(tmp_path / "store")
    assert not store.exists("out/victim.csv")
    assert list(store.list()) == []
    # The orphaned temp file is hidden from list() and from reads by its reserved prefix.
    orphans = [p for p in (tmp_path / "store").rglob("*") if p.is_file()]
    assert orphans and all(p.name.startswith(TEMP_PREFIX) for p in orphans)
    # Once it is old enough to belong to a dead writer, the next write there removes it.
    for orphan in orphans:
        os.utime(orphan, (time.time() - 7200, time.time() - 7200))
    LocalStorage(tmp_path / "store").write("out/victim.csv", b"retried")
    assert [p.name for p in (tmp_path / "store").rglob("*") if p.is_file()] == ["victim.csv"]


def test_local_temp_prefix_is_reserved(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)
    with pytest.raises(StorageError, match="reserved"):
        store.write(f"a/{TEMP_PREFIX}x", b"1")


def test_s3_failed_multipart_is_aborted(moto_server: MotoServer, s3_bucket: str) -> None:
    store = open_small_threshold(f"s3://{s3_bucket}/root")
    payload = random.Random(6).randbytes(LARGE_SIZE)
    with pytest.raises(StorageError, match="simulated writer failure"):
        store.write("out/big.bin", FailingStream(payload, fail_at=11 * MIB))
    client = moto_server.client()
    assert client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
    assert client.list_objects_v2(Bucket=s3_bucket)["KeyCount"] == 0


def test_gcs_failed_resumable_upload_is_not_visible(
    gcs_emulator: GcsEmulator, gcs_bucket: str
) -> None:
    store = open_small_threshold(f"gs://{gcs_bucket}/root")
    payload = random.Random(8).randbytes(LARGE_SIZE)
    with pytest.raises(StorageError, match="simulated writer failure"):
        store.write("out/big.bin", FailingStream(payload, fail_at=9 * MIB))
    assert list(gcs_emulator.client().list_blobs(gcs_bucket)) == []
