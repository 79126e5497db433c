"""Ids survive moves and renames on disk, as in Drive; new files get new ids."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest
import requests

from devstack.drive_emulator import DriveEmulator, generate_tree, path_id
from devstack.drive_emulator import tree as tree_module
from tests.drive_emulator.helpers import call, list_all


@pytest.fixture
def small(tmp_path: Path) -> Iterator[tuple[Path, DriveEmulator]]:
    root = tmp_path / "root"
    for rel, body in {
        "a/x.csv": b"x\n1\n",
        "a/y.csv": b"y\n2\n",
        "b/z.csv": b"z\n3\n",
        "keep.csv": b"k\n",
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(body)
    with DriveEmulator(root) as emulator:
        yield root, emulator


def get(http: requests.Session, emu: DriveEmulator, file_id: str) -> requests.Response:
    return call(http, emu, f"files/{file_id}", fields="id,name,parents,md5Checksum")


def test_first_ids_derive_from_paths(small: tuple[Path, DriveEmulator]) -> None:
    _, emu = small
    assert emu.id_for("a/x.csv") == path_id("a/x.csv")
    assert emu.id_for("a") == path_id("a")


def test_a_renamed_file_keeps_its_id(
    small: tuple[Path, DriveEmulator], http: requests.Session
) -> None:
    root, emu = small
    file_id = emu.id_for("a/x.csv")
    os.rename(root / "a/x.csv", root / "a/renamed.csv")
    assert emu.id_for("a/renamed.csv") == file_id
    body = get(http, emu, file_id).json()
    assert body["name"] == "renamed.csv" and body["parents"] == [emu.id_for("a")]
    with pytest.raises(KeyError):
        emu.id_for("a/x.csv")


def test_a_file_moved_to_another_folder_keeps_its_id_and_is_listed_there(
    small: tuple[Path, DriveEmulator], http: requests.Session
) -> None:
    root, emu = small
    file_id, b_id = emu.id_for("a/x.csv"), emu.id_for("b")
    os.rename(root / "a/x.csv", root / "b/x.csv")
    files, _ = list_all(http, emu, q=f"'{b_id}' in parents", fields="files(id,name)")
    assert {"id": file_id, "name": "x.csv"} in files
    assert get(http, emu, file_id).json()["parents"] == [b_id]


def test_a_renamed_folder_keeps_its_id_and_its_childrens_ids(
    small: tuple[Path, DriveEmulator], http: requests.Session
) -> None:
    root, emu = small
    folder, child = emu.id_for("a"), emu.id_for("a/y.csv")
    os.rename(root / "a", root / "b/a2")
    assert emu.id_for("b/a2") == folder
    assert emu.id_for("b/a2/y.csv") == child
    assert get(http, emu, child).json()["parents"] == [folder]
    assert get(http, emu, folder).json()["parents"] == [emu.id_for("b")]


def test_swapped_names_follow_the_files(small: tuple[Path, DriveEmulator]) -> None:
    root, emu = small
    x_id, y_id = emu.id_for("a/x.csv"), emu.id_for("a/y.csv")
    os.rename(root / "a/x.csv", root / "a/tmp")
    os.rename(root / "a/y.csv", root / "a/x.csv")
    os.rename(root / "a/tmp", root / "a/y.csv")
    assert emu.id_for("a/x.csv") == y_id
    assert emu.id_for("a/y.csv") == x_id


def test_an_edit_keeps_the_id_in_place_or_by_replacement(
    small: tuple[Path, DriveEmulator], http: requests.Session
) -> None:
    root, emu = small
    file_id = emu.id_for("a/x.csv")
    (root / "a/x.csv").write_bytes(b"x\n1\n2\n")
    assert emu.id_for("a/x.csv") == file_id
    (root / "a/.x.tmp").write_bytes(b"x\n9\n")  # an editor's save: write aside, then replace
    os.replace(root / "a/.x.tmp", root / "a/x.csv")
    assert emu.id_for("a/x.csv") == file_id
    assert get(http, emu, file_id).json()["name"] == "x.csv"


def test_a_new_file_gets_a_new_id_even_on_a_freed_inode(
    small: tuple[Path, DriveEmulator], http: requests.Session
) -> None:
    root, emu = small
    old = emu.id_for("a/x.csv")
    (root / "a/x.csv").unlink()
    (root / "b/new.csv").write_bytes(b"n\n1\n")  # ext4 reuses the freed inode at once
    new = emu.id_for("b/new.csv")
    assert new != old
    assert get(http, emu, old).status_code == 404


def test_a_file_deleted_and_created_again_later_gets_a_new_id(
    small: tuple[Path, DriveEmulator], http: requests.Session
) -> None:
    root, emu = small
    old = emu.id_for("keep.csv")
    (root / "keep.csv").unlink()
    assert get(http, emu, old).status_code == 404  # the emulator saw it gone
    (root / "keep.csv").write_bytes(b"k\n")
    assert emu.id_for("keep.csv") != old


def test_an_id_override_wins_and_names_the_disk_name(
    small: tuple[Path, DriveEmulator], http: requests.Session
) -> None:
    root, emu = small
    (root / "a/.drive.json").write_text(json.dumps({"entries": {"x.csv": {"id": "fixed-1"}}}))
    assert emu.id_for("a/x.csv") == "fixed-1"
    assert get(http, emu, "fixed-1").json()["name"] == "x.csv"
    (root / "a/.drive.json").unlink()
    assert emu.id_for("a/x.csv") != "fixed-1"
    assert get(http, emu, "fixed-1").status_code == 404


def test_a_move_does_not_rehash_the_file(
    small: tuple[Path, DriveEmulator], http: requests.Session
) -> None:
    root, emu = small
    file_id = emu.id_for("a/x.csv")
    md5 = get(http, emu, file_id).json()["md5Checksum"]
    os.rename(root / "a/x.csv", root / "b/x.csv")
    with mock.patch.object(tree_module.hashlib, "md5", wraps=tree_module.hashlib.md5) as spy:
        assert get(http, emu, file_id).json()["md5Checksum"] == md5
    assert spy.call_count == 0


def test_ten_thousand_files_refresh_without_hashing(tmp_path: Path) -> None:
    root = tmp_path / "big"
    paths = generate_tree(root, 10_000, min_size=128, max_size=256, depth=2, fanout=10)
    with DriveEmulator(root) as emu:
        with mock.patch.object(tree_module.hashlib, "md5", wraps=tree_module.hashlib.md5) as spy:
            moved = paths[0].with_name("moved.csv")
            os.rename(paths[0], moved)
            assert emu.tree.refresh() == 1  # one change: the rename
            assert emu.tree.refresh() == 0
        assert spy.call_count == 0
        assert emu.id_for(str(moved.relative_to(root))) == path_id(str(paths[0].relative_to(root)))
