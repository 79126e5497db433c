"""changes.getStartPageToken / changes.list / about.get: the feed follows what happens on disk."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from devstack.drive_emulator import DriveEmulator, FaultConfig
from tests.drive_emulator.helpers import call, error_of

FIELDS = (
    "nextPageToken,newStartPageToken,"
    "changes(fileId,removed,time,changeType,file(id,name,mimeType,parents,md5Checksum,size,"
    "modifiedTime,trashed))"
)
SHARED = "0AChangesSharedDrive9PVA"


def make_tree(root: Path) -> Path:
    for rel, body in {
        "sales/q1.csv": b"a\n1\n",
        "sales/q2.csv": b"a\n2\n",
        "sales/q3.csv": b"a\n3\n",
        "hr/staff.csv": b"n\nx\n",
        "hr/old.csv": b"n\ny\n",
        "other/keep.csv": b"k\n",
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(body)
        os.utime(root / rel, (1_700_000_000, 1_700_000_000))
    return root


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[tuple[Path, DriveEmulator]]:
    root = make_tree(tmp_path / "root")
    with DriveEmulator(root) as emulator:
        yield root, emulator


def start(http: requests.Session, emu: DriveEmulator, **params: Any) -> str:
    response = call(http, emu, "changes/startPageToken", **params)
    assert response.status_code == 200, response.text
    return str(response.json()["startPageToken"])


def all_changes(
    http: requests.Session, emu: DriveEmulator, token: str, **params: Any
) -> tuple[list[dict[str, Any]], str, int]:
    """Follow nextPageToken to the end: (changes, newStartPageToken, pages)."""
    changes: list[dict[str, Any]] = []
    pages = 0
    while True:
        response = call(http, emu, "changes", pageToken=token, **params)
        assert response.status_code == 200, response.text
        body = response.json()
        pages += 1
        changes += body["changes"]
        if "nextPageToken" not in body:
            return changes, body["newStartPageToken"], pages
        assert "newStartPageToken" not in body
        token = body["nextPageToken"]


def by_id(changes: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    ids = [c["fileId"] for c in changes]
    assert len(ids) == len(set(ids)), "one change per file"
    return {c["fileId"]: c for c in changes}


def test_nothing_changed_gives_no_changes_and_the_same_token(
    tree: tuple[Path, DriveEmulator], http: requests.Session
) -> None:
    _, emu = tree
    token = start(http, emu)
    changes, new_start, pages = all_changes(http, emu, token)
    assert (changes, new_start, pages) == ([], token, 1)
    assert emu.stats.snapshot()["requests"]["changes"] == 1


def test_every_kind_of_change_is_listed_once_in_its_latest_state(
    tree: tuple[Path, DriveEmulator], http: requests.Session
) -> None:
    root, emu = tree
    ids = {rel: emu.id_for(rel) for rel in ("sales/q1.csv", "sales/q2.csv", "sales/q3.csv")}
    ids.update({rel: emu.id_for(rel) for rel in ("hr/staff.csv", "hr/old.csv", "hr")})
    token = start(http, emu)
    (root / "sales/q1.csv").write_bytes(b"a\n1\n11\n")  # content edit
    os.utime(root / "sales/q1.csv", (1_700_000_100, 1_700_000_100))
    os.utime(root / "sales/q2.csv", (1_700_000_200, 1_700_000_200))  # mtime only
    os.rename(root / "sales/q3.csv", root / "sales/q3-final.csv")  # rename
    os.rename(root / "hr/staff.csv", root / "other/staff.csv")  # move
    (root / "hr/old.csv").unlink()  # delete
    (root / "sales/.drive.json").write_text(
        json.dumps({"entries": {"q2.csv": {"trashed": True}}})  # trash
    )
    (root / "sales/new.csv").write_bytes(b"a\n4\n")  # add
    changes, new_start, _ = all_changes(http, emu, token, fields=FIELDS)
    seen = by_id(changes)
    new_id = emu.id_for("sales/new.csv")
    assert set(seen) == {*ids.values(), new_id} - {ids["hr"]}  # a folder's children: no change
    assert all(c["changeType"] == "file" for c in changes)
    assert seen[ids["sales/q1.csv"]]["file"]["size"] == "7"
    assert seen[ids["sales/q1.csv"]]["file"]["modifiedTime"] == "2023-11-14T22:15:00.000Z"
    assert seen[ids["sales/q2.csv"]]["removed"] is False
    assert seen[ids["sales/q2.csv"]]["file"]["trashed"] is True
    assert seen[ids["sales/q3.csv"]]["file"]["name"] == "q3-final.csv"
    assert seen[ids["hr/staff.csv"]]["file"]["parents"] == [emu.id_for("other")]
    assert seen[ids["hr/old.csv"]] == {
        "fileId": ids["hr/old.csv"],
        "removed": True,
        "time": seen[ids["hr/old.csv"]]["time"],
        "changeType": "file",
    }
    assert seen[new_id]["file"]["name"] == "new.csv"
    assert all(c["time"].endswith("Z") for c in changes)
    # the new start token lists nothing until something else happens
    assert all_changes(http, emu, new_start)[0] == []


def test_a_file_changed_twice_is_listed_once_after_the_others(
    tree: tuple[Path, DriveEmulator], http: requests.Session
) -> None:
    root, emu = tree
    token = start(http, emu)
    os.utime(root / "sales/q1.csv", (1_700_000_100, 1_700_000_100))
    os.utime(root / "sales/q2.csv", (1_700_000_100, 1_700_000_100))
    start(http, emu)  # the emulator notices both
    os.utime(root / "sales/q1.csv", (1_700_000_300, 1_700_000_300))
    changes, _, _ = all_changes(http, emu, token, fields=FIELDS)
    assert [c["fileId"] for c in changes] == [
        emu.id_for("sales/q2.csv"),
        emu.id_for("sales/q1.csv"),
    ]
    assert changes[1]["file"]["modifiedTime"] == "2023-11-14T22:18:20.000Z"


def test_paging_with_next_page_token_ends_with_new_start_page_token(
    tree: tuple[Path, DriveEmulator], http: requests.Session
) -> None:
    root, emu = tree
    token = start(http, emu)
    for i in range(7):
        (root / f"sales/n{i}.csv").write_bytes(b"a\n%d\n" % i)
    changes, new_start, pages = all_changes(http, emu, token, pageSize=3)
    assert pages == 3 and len(by_id(changes)) == 7
    assert int(new_start) > int(token)
    # the page-size cap applies as it does to files.list
    with DriveEmulator(root, page_size_cap=2) as capped:
        capped_token = start(http, capped)
        (root / "sales/late.csv").write_bytes(b"a\n")
        (root / "sales/later.csv").write_bytes(b"a\n")
        (root / "sales/latest.csv").write_bytes(b"a\n")
        assert all_changes(http, capped, capped_token, pageSize=100)[2] == 2


def test_include_removed_false_leaves_removals_out(
    tree: tuple[Path, DriveEmulator], http: requests.Session
) -> None:
    root, emu = tree
    token = start(http, emu)
    (root / "hr/old.csv").unlink()
    (root / "hr/new.csv").write_bytes(b"x\n")
    kept, _, _ = all_changes(http, emu, token, includeRemoved="false")
    assert [c["fileId"] for c in kept] == [emu.id_for("hr/new.csv")]
    assert len(all_changes(http, emu, token)[0]) == 2  # includeRemoved defaults to true


@pytest.mark.parametrize("token", ["abc", "0", "99999", "-1", ""])
def test_an_unknown_token_is_invalid_value(
    tree: tuple[Path, DriveEmulator], http: requests.Session, token: str
) -> None:
    _, emu = tree
    response = call(http, emu, "changes", pageToken=token)
    assert response.status_code == 400
    assert error_of(response) == {
        "domain": "global",
        "reason": "invalid",
        "message": "Invalid Value",
        "locationType": "parameter",
        "location": "pageToken",
    }


def test_expired_tokens_are_invalid_and_a_new_one_works(
    tree: tuple[Path, DriveEmulator], http: requests.Session
) -> None:
    root, emu = tree
    old = start(http, emu)
    (root / "sales/new.csv").write_bytes(b"x\n")
    fresh = emu.expire_tokens()
    assert call(http, emu, "changes", pageToken=old).status_code == 400
    assert start(http, emu) == fresh
    (root / "sales/newer.csv").write_bytes(b"x\n")
    changes, _, _ = all_changes(http, emu, fresh)
    assert [c["fileId"] for c in changes] == [emu.id_for("sales/newer.csv")]


def test_the_expire_fault_refuses_every_token(
    tree: tuple[Path, DriveEmulator], http: requests.Session
) -> None:
    _, emu = tree
    token = start(http, emu)
    emu.set_faults(FaultConfig(expire_page_tokens=True))
    response = call(http, emu, "changes", pageToken=token)
    assert response.status_code == 400 and error_of(response)["location"] == "pageToken"
    assert emu.stats.snapshot()["faults"] == {"expired_page_token": 1}
    assert call(http, emu, "changes/startPageToken").status_code == 200
    emu.set_faults(FaultConfig())
    assert call(http, emu, "changes", pageToken=token).status_code == 200


def test_bad_requests_are_refused_like_drive(
    tree: tuple[Path, DriveEmulator], http: requests.Session
) -> None:
    _, emu = tree
    missing = call(http, emu, "changes")
    assert missing.status_code == 400 and error_of(missing)["reason"] == "required"
    token = start(http, emu)
    bad_field = call(http, emu, "changes", pageToken=token, fields="changes(file(bogus))")
    assert error_of(bad_field)["message"] == "Invalid field selection bogus"
    assert call(http, emu, "changes", pageToken=token, fields="changes(nope)").status_code == 400
    assert call(http, emu, "changes", pageToken=token, pageSize="0").status_code == 400
    assert call(http, emu, "changes", pageToken=token, spaces="photos").status_code == 400
    other = call(http, emu, "changes", pageToken=token, driveId="0Aelse")
    assert other.status_code == 404 and error_of(other)["location"] == "driveId"


def test_a_renamed_folder_is_one_change_and_its_files_none(
    tree: tuple[Path, DriveEmulator], http: requests.Session
) -> None:
    root, emu = tree
    folder = emu.id_for("hr")
    token = start(http, emu)
    os.rename(root / "hr", root / "people")
    changes, _, _ = all_changes(http, emu, token, fields=FIELDS)
    assert [(c["fileId"], c["file"]["name"]) for c in changes] == [(folder, "people")]


def test_a_shared_drive_feed_is_scoped_by_drive_id(tmp_path: Path, http: requests.Session) -> None:
    root = make_tree(tmp_path / "root")
    flags = {"driveId": SHARED, "supportsAllDrives": "true", "includeItemsFromAllDrives": "true"}
    with DriveEmulator(root, drive_id=SHARED) as emu:
        token = start(http, emu, driveId=SHARED, supportsAllDrives="true")
        (root / "sales/new.csv").write_bytes(b"x\n")
        mask = "nextPageToken,newStartPageToken,changes(driveId,file(driveId))"
        changes, _, _ = all_changes(http, emu, token, **flags, fields=mask)
        assert changes == [{"driveId": SHARED, "file": {"driveId": SHARED}}]
        # without saying it handles shared drives, an app sees none of their items
        hidden, _, _ = all_changes(http, emu, token, driveId=SHARED)
        assert hidden == []
        mine, _, _ = all_changes(http, emu, token, **flags, restrictToMyDrive="true")
        assert mine == []
        unknown = call(http, emu, "changes/startPageToken", driveId="0Aother")
        assert unknown.status_code == 404


def test_about_needs_fields_and_masks_them(
    tree: tuple[Path, DriveEmulator], http: requests.Session
) -> None:
    _, emu = tree
    missing = call(http, emu, "about")
    assert missing.status_code == 400
    assert error_of(missing) == {
        "domain": "global",
        "reason": "required",
        "message": "The 'fields' parameter is required for this method.",
        "locationType": "parameter",
        "location": "fields",
    }
    user = call(http, emu, "about", fields="user(emailAddress,me)").json()
    assert user == {"user": {"emailAddress": "emulator@drivepipe.local", "me": True}}
    quota = call(http, emu, "about", fields="storageQuota/limit,kind").json()
    assert quota == {"kind": "drive#about", "storageQuota": {"limit": str(15 * 1024**3)}}
    assert call(http, emu, "about", fields="bogus").status_code == 400
    assert emu.stats.snapshot()["requests"]["about"] == 4
