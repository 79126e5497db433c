"""Local-directory specifics the shared contract can't express (bucket stores have no dirs)."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from shared.errors import StorageError
from shared.storage.local import TEMP_MAX_AGE, TEMP_PREFIX, LocalStorage


def test_key_under_an_existing_file_is_a_clear_error(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)
    store.write("a", b"file")
    with pytest.raises(StorageError, match="cannot write"):
        store.write("a/b.csv", b"nested")
    assert store.read("a") == b"file"


def test_key_that_is_a_directory_is_not_an_object(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)
    store.write("dir/x.csv", b"1")
    assert store.stat("dir") is None
    with pytest.raises(StorageError):
        store.write("dir", b"would replace a directory")
    assert store.read("dir/x.csv") == b"1"


def test_delete_prunes_empty_directories_but_not_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    store = LocalStorage(root)
    store.write("a/b/c/x.csv", b"1")
    store.write("a/keep.csv", b"2")
    store.delete("a/b/c/x.csv")
    assert not (root / "a" / "b").exists()
    assert (root / "a" / "keep.csv").exists()
    store.delete("a/keep.csv")
    assert root.is_dir() and list(root.iterdir()) == []


def test_written_files_follow_the_umask_not_mkstemp_0600(tmp_path: Path) -> None:
    old_mask = os.umask(0o022)
    os.umask(old_mask)
    store = LocalStorage(tmp_path)
    store.write("x.csv", b"1")
    mode = stat.S_IMODE((tmp_path / "x.csv").stat().st_mode)
    assert mode == 0o666 & ~old_mask


def test_missing_root_reads_as_empty(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "not-yet")
    assert list(store.list()) == []
    assert store.stat("x") is None
    assert not (tmp_path / "not-yet").exists(), "reads must not create the root"


def _temp_file(directory: Path, name: str, age: float = 0.0) -> Path:
    """A leftover temp file as a killed writer leaves it, last written ``age`` seconds ago."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{TEMP_PREFIX}{name}"
    path.write_bytes(b"partial")
    when = time.time() - age
    os.utime(path, (when, when))
    return path


def test_a_write_removes_stale_temp_files_but_not_fresh_ones(tmp_path: Path) -> None:
    stale = _temp_file(tmp_path / "out", "dead", age=TEMP_MAX_AGE + 60)
    fresh = _temp_file(tmp_path / "out", "live", age=5)  # a concurrent writer's
    elsewhere = _temp_file(tmp_path / "other", "dead", age=TEMP_MAX_AGE + 60)
    store = LocalStorage(tmp_path)
    store.write("out/a.csv", b"1")
    assert not stale.exists()
    assert fresh.exists() and elsewhere.exists()  # another directory waits for cleanup_temp()
    assert [info.key for info in store.list()] == ["out/a.csv"]


def test_cleanup_temp_sweeps_the_tree_by_mtime_with_an_injected_clock(tmp_path: Path) -> None:
    first = _temp_file(tmp_path / "a", "x")
    second = _temp_file(tmp_path / "b" / "c", "y")
    LocalStorage(tmp_path).write("b/keep.csv", b"1")
    assert LocalStorage(tmp_path).cleanup_temp() == 0  # both fresh
    later = LocalStorage(tmp_path, clock=lambda: time.time() + TEMP_MAX_AGE + 1)
    assert later.cleanup_temp() == 2
    assert not first.exists() and not second.exists()
    assert later.read("b/keep.csv") == b"1"
    assert LocalStorage(tmp_path / "missing").cleanup_temp() == 0
