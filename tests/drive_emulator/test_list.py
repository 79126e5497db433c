"""files.list over HTTP: paging, fields masks, q filtering, ordering, parameter errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from devstack.drive_emulator import DriveEmulator
from tests.drive_emulator.helpers import call, error_of, list_all


def children_query(folder_id: str) -> str:
    return f"'{folder_id}' in parents"


def test_default_fields_are_kind_id_name_mimetype(
    emu: DriveEmulator, http: requests.Session
) -> None:
    body = call(http, emu, "files", q=children_query(emu.root_id)).json()
    assert set(body) == {"kind", "incompleteSearch", "files"}
    assert body["kind"] == "drive#fileList" and body["incompleteSearch"] is False
    for item in body["files"]:
        assert set(item) == {"kind", "id", "name", "mimeType"}


def test_page_size_cap_forces_short_pages_and_tokens_walk_everything(
    tree_root: Path, http: requests.Session
) -> None:
    with DriveEmulator(tree_root, page_size_cap=3) as capped, DriveEmulator(tree_root) as plain:
        everything, pages = list_all(http, capped, pageSize=1000, fields="nextPageToken,files(id)")
        reference, one_page = list_all(http, plain, pageSize=1000, fields="nextPageToken,files(id)")
    ids = [f["id"] for f in everything]
    assert len(ids) == len(set(ids)) == len(reference) > 20
    assert one_page == 1
    assert pages == -(-len(ids) // 3)  # ceil: every page but the last holds exactly 3


def test_page_tokens_are_tied_to_the_query(emu: DriveEmulator, http: requests.Session) -> None:
    first = call(http, emu, "files", pageSize=2, fields="nextPageToken").json()
    token = first["nextPageToken"]
    other_query = call(http, emu, "files", pageToken=token, q="trashed = false")
    assert other_query.status_code == 400
    assert error_of(other_query)["location"] == "pageToken"
    garbage = call(http, emu, "files", pageToken="not-a-token")
    assert garbage.status_code == 400 and error_of(garbage)["reason"] == "invalid"


@pytest.mark.parametrize("size", ["0", "1001", "ten"])
def test_page_size_out_of_range_is_400(
    emu: DriveEmulator, http: requests.Session, size: str
) -> None:
    response = call(http, emu, "files", pageSize=size)
    assert response.status_code == 400
    detail = error_of(response)
    assert detail["reason"] == "invalid" and detail["location"] == "pageSize"


def test_fields_masks_select_exactly_what_was_asked(
    emu: DriveEmulator, http: requests.Session
) -> None:
    q = children_query(emu.id_for("sales/2024"))
    body = call(http, emu, "files", q=q, fields="files(id,name,size,capabilities/canDownload)")
    items = body.json()["files"]
    assert set(body.json()) == {"files"}
    assert items and all(set(i) == {"id", "name", "size", "capabilities"} for i in items)
    assert all(set(i["capabilities"]) == {"canDownload"} for i in items)
    slash = call(http, emu, "files", q=q, fields="files/id").json()
    assert [set(i) for i in slash["files"]] == [{"id"}] * len(items)
    star = call(http, emu, "files", q=q, fields="*").json()
    assert {"md5Checksum", "parents", "modifiedTime"} <= set(star["files"][0])
    # a valid File field the entry lacks is simply absent
    folders = call(http, emu, "files", q=children_query(emu.root_id), fields="files(size,id)")
    assert any(set(i) == {"id"} for i in folders.json()["files"])


@pytest.mark.parametrize(
    ("fields", "bad"),
    [
        ("files(id,bogus)", "bogus"),
        ("webViewLink", "webViewLink"),
        ("files(capabilities/nope)", "capabilities/nope"),
    ],
)
def test_unknown_field_selection_is_400(
    emu: DriveEmulator, http: requests.Session, fields: str, bad: str
) -> None:
    response = call(http, emu, "files", fields=fields)
    assert response.status_code == 400
    detail = error_of(response)
    assert detail["reason"] == "invalidParameter" and detail["location"] == "fields"
    assert detail["message"].startswith("Invalid field selection ")
    assert bad in detail["message"]


def names(emu: DriveEmulator, http: requests.Session, q: str, **params: str) -> list[str]:
    files, _ = list_all(http, emu, q=q, fields="nextPageToken,files(name)", **params)
    return sorted(f["name"] for f in files)


def test_trashed_files_are_listed_unless_the_query_excludes_them(
    emu: DriveEmulator, http: requests.Session
) -> None:
    folder = children_query(emu.id_for("sales/2024"))
    assert names(emu, http, folder) == ["q0_draft.csv", "q1.csv", "q2.csv"]
    assert names(emu, http, f"{folder} and trashed = false") == ["q1.csv", "q2.csv"]
    assert names(emu, http, f"{folder} and trashed = true") == ["q0_draft.csv"]


def test_q_forms_used_by_clients(emu: DriveEmulator, http: requests.Session) -> None:
    sheet = "application/vnd.google-apps.spreadsheet"
    assert names(emu, http, f"mimeType = '{sheet}'") == ["targets", "wide"]
    root = children_query("root")
    folders = names(emu, http, f"{root} and mimeType = 'application/vnd.google-apps.folder'")
    assert "sales" in folders and "README" not in folders
    not_folders = names(emu, http, f"{root} and mimeType != 'application/vnd.google-apps.folder'")
    assert not_folders == ["README", "targets", "wide"]
    assert names(emu, http, "name = 'O\\'Brien report.csv'") == ["O'Brien report.csv"]
    assert names(emu, http, "name = 'back\\\\slash.csv'") == ["back\\slash.csv"]
    assert names(emu, http, "name contains 'budget'") == ["budget_2024.xlsx"]
    either = f"({children_query(emu.id_for('sales/2025'))} or name = 'catalog.json')"
    assert names(emu, http, f"{either} and not name contains 'q1'") == ["catalog.json"]


def test_modified_time_filters_see_overridden_times(
    emu: DriveEmulator, http: requests.Session
) -> None:
    dupes = children_query(emu.id_for("dupes"))
    old = names(emu, http, f"{dupes} and modifiedTime < '2021-01-01T00:00:00'")
    assert old == ["report.csv"]
    recent = names(emu, http, f"{dupes} and modifiedTime >= '2021-01-01T00:00:00Z'")
    assert recent == ["fixed.csv", "locked.csv", "report.csv"]


def test_unparseable_q_is_400_invalid_value(emu: DriveEmulator, http: requests.Session) -> None:
    response = call(http, emu, "files", q="name = 'x' and (")
    assert response.status_code == 400
    detail = error_of(response)
    assert (detail["reason"], detail["message"], detail["location"]) == (
        "invalid",
        "Invalid Value",
        "q",
    )


def test_order_by(emu: DriveEmulator, http: requests.Session) -> None:
    q = children_query(emu.root_id)
    by_name = call(http, emu, "files", q=q, orderBy="name").json()["files"]
    assert [f["name"].lower() for f in by_name] == sorted(f["name"].lower() for f in by_name)
    mixed = call(http, emu, "files", q=q, orderBy="folder,name").json()["files"]
    is_folder = [f["mimeType"] == "application/vnd.google-apps.folder" for f in mixed]
    assert is_folder == sorted(is_folder, reverse=True)  # folders first
    dupes = children_query(emu.id_for("dupes"))
    newest = call(http, emu, "files", q=dupes, orderBy="modifiedTime desc", fields="*").json()
    times = [f["modifiedTime"] for f in newest["files"]]
    assert times == sorted(times, reverse=True) and times[-1].startswith("2020")
    assert call(http, emu, "files", orderBy="size").status_code == 400


def test_duplicate_names_are_distinct_files(emu: DriveEmulator, http: requests.Session) -> None:
    files, _ = list_all(http, emu, q="name = 'report.csv'", fields="nextPageToken,files(id,size)")
    assert len(files) == 2 and files[0]["id"] != files[1]["id"]


def test_spaces_and_unknown_parameters(emu: DriveEmulator, http: requests.Session) -> None:
    assert call(http, emu, "files", spaces="appDataFolder").json()["files"] == []
    assert call(http, emu, "files", spaces="photos").status_code == 400
    # The emulator ignores query parameters it does not know (see the package docs).
    assert call(http, emu, "files", someUnknownParam="1").status_code == 200
