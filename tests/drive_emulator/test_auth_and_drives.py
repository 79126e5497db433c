"""Auth refusals and shared-drive visibility rules."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from devstack.drive_emulator import DriveEmulator
from tests.drive_emulator.helpers import call, error_of

DRIVE_ID = "0AExampleSharedDrive9PVA"
ALL_DRIVES = {"supportsAllDrives": "true", "includeItemsFromAllDrives": "true"}


def test_request_without_key_or_token_is_refused(
    emu: DriveEmulator, http: requests.Session
) -> None:
    response = call(http, emu, "files", key=None)
    assert response.status_code == 403
    assert response.json()["error"]["status"] == "PERMISSION_DENIED"
    assert error_of(response)["message"] == "The request is missing a valid API key."


def test_any_key_or_bearer_token_is_accepted_by_default(
    emu: DriveEmulator, http: requests.Session
) -> None:
    assert call(http, emu, "files", key="anything").status_code == 200
    bearer = call(http, emu, "files", key=None, headers={"Authorization": "Bearer ya29.x"})
    assert bearer.status_code == 200
    assert call(http, emu, "files", key=None, access_token="ya29.y").status_code == 200


def test_restricted_keys_and_tokens(tree_root: Path, http: requests.Session) -> None:
    with DriveEmulator(tree_root, api_keys={"good-key"}, tokens={"good-token"}) as emulator:
        assert call(http, emulator, "files", key="good-key").status_code == 200
        bad_key = call(http, emulator, "files", key="wrong")
        assert bad_key.status_code == 400
        assert error_of(bad_key)["reason"] == "keyInvalid"
        assert error_of(bad_key)["message"] == "API key not valid. Please pass a valid API key."
        good = call(
            http, emulator, "files", key=None, headers={"Authorization": "Bearer good-token"}
        )
        assert good.status_code == 200
        bad_token = call(http, emulator, "files", key=None, headers={"Authorization": "Bearer no"})
        assert bad_token.status_code == 401
        detail = error_of(bad_token)
        assert (detail["reason"], detail["location"], detail["locationType"]) == (
            "authError",
            "Authorization",
            "header",
        )
        assert "WWW-Authenticate" in bad_token.headers


def test_auth_is_checked_before_the_file_lookup(emu: DriveEmulator, http: requests.Session) -> None:
    assert call(http, emu, "files/unknown-id", key=None).status_code == 403
    assert call(http, emu, "nope", key="k").status_code == 404


@pytest.fixture(scope="module")
def shared(tree_root: Path) -> DriveEmulator:
    emulator = DriveEmulator(tree_root, drive_id=DRIVE_ID).start()
    yield emulator  # type: ignore[misc]
    emulator.stop()


def test_shared_drive_root_is_the_drive_and_files_carry_drive_id(
    shared: DriveEmulator, http: requests.Session
) -> None:
    assert shared.root_id == DRIVE_ID
    body = call(
        http, shared, "files", corpora="drive", driveId=DRIVE_ID, q=f"'{DRIVE_ID}' in parents",
        fields="files(id,driveId,parents)", **ALL_DRIVES,
    ).json()  # fmt: skip
    assert body["files"]
    assert {f["driveId"] for f in body["files"]} == {DRIVE_ID}
    assert {f["parents"][0] for f in body["files"]} == {DRIVE_ID}
    everywhere = call(http, shared, "files", corpora="allDrives", **ALL_DRIVES).json()
    assert everywhere["files"]


@pytest.mark.parametrize(
    "params",
    [
        {},  # default corpora=user: shared-drive items are not part of My Drive
        {"supportsAllDrives": "true"},
        {"corpora": "user", **ALL_DRIVES},
    ],
)
def test_shared_drive_items_hidden_without_the_flags(
    shared: DriveEmulator, http: requests.Session, params: dict[str, str]
) -> None:
    response = call(http, shared, "files", q=f"'{DRIVE_ID}' in parents", **params)
    assert response.status_code == 200
    assert response.json()["files"] == []


def test_shared_drive_parameter_errors(shared: DriveEmulator, http: requests.Session) -> None:
    no_drive_id = call(http, shared, "files", corpora="drive", **ALL_DRIVES)
    assert no_drive_id.status_code == 400
    assert error_of(no_drive_id)["reason"] == "teamDriveIdRequiresTeamDriveCorpora"
    wrong_corpora = call(http, shared, "files", driveId=DRIVE_ID, **ALL_DRIVES)
    assert wrong_corpora.status_code == 400
    not_included = call(http, shared, "files", corpora="drive", driveId=DRIVE_ID)
    assert not_included.status_code == 403
    assert "includeItemsFromAllDrives" in error_of(not_included)["message"]
    other = call(http, shared, "files", corpora="drive", driveId="0AOther", **ALL_DRIVES)
    assert other.status_code == 404 and error_of(other)["location"] == "driveId"
    assert call(http, shared, "files", corpora="everything").status_code == 400


def test_get_in_shared_drive_needs_supports_all_drives(
    shared: DriveEmulator, http: requests.Session
) -> None:
    file_id = shared.id_for("sales/2024/q1.csv")
    hidden = call(http, shared, f"files/{file_id}")
    assert hidden.status_code == 404 and error_of(hidden)["reason"] == "notFound"
    found = call(http, shared, f"files/{file_id}", supportsAllDrives="true", fields="driveId")
    assert found.json() == {"driveId": DRIVE_ID}
    media = call(http, shared, f"files/{file_id}", alt="media", supportsAllDrives="true")
    assert media.content == (shared.tree.root / "sales/2024/q1.csv").read_bytes()
    legacy = call(http, shared, f"files/{file_id}", supportsTeamDrives="true", fields="id")
    assert legacy.status_code == 200
    assert call(http, shared, f"files/{file_id}", supportsAllDrives="yes").status_code == 400
