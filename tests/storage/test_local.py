"""Local-directory specifics the shared contract can't express (bucket stores have no dirs)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from shared.errors import StorageError
from shared.storage.local import LocalStorage


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
