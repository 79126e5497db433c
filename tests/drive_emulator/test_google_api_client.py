"""Google's own client (google-api-python-client) reads the emulator's changes feed and about."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from devstack.drive_emulator import DriveEmulator

discovery = pytest.importorskip("googleapiclient.discovery")
errors = pytest.importorskip("googleapiclient.errors")

FIELDS = "nextPageToken,newStartPageToken,changes(fileId,removed,file(id,name,parents,trashed))"


def service_for(emu: DriveEmulator) -> Any:
    """A Drive v3 service on the emulator (the trailing path of api_endpoint matters)."""
    return discovery.build(
        "drive",
        "v3",
        static_discovery=True,
        client_options={"api_endpoint": f"{emu.url}/"},
        developerKey="test-key",
        cache_discovery=False,
    )


def test_changes_feed_and_about_through_googleapiclient(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    for name in ("x.csv", "y.csv", "z.csv"):
        (root / "a" / name).write_bytes(b"v\n1\n")
    with DriveEmulator(root) as emu:
        drive = service_for(emu)
        token = drive.changes().getStartPageToken().execute()["startPageToken"]
        moved, deleted = emu.id_for("a/x.csv"), emu.id_for("a/y.csv")
        os.rename(root / "a/x.csv", root / "b/x.csv")
        (root / "a/y.csv").unlink()
        (root / "a/new.csv").write_bytes(b"v\n2\n")
        (root / "a/z.csv").write_bytes(b"v\n3\n")
        os.utime(root / "a/z.csv", (1_700_000_000, 1_700_000_000))

        changes: list[dict[str, Any]] = []
        pages = 0
        page_token: str | None = token
        new_start = None
        while page_token is not None:
            page = (
                drive.changes()
                .list(pageToken=page_token, includeRemoved=True, pageSize=2, fields=FIELDS)
                .execute()
            )
            pages += 1
            changes += page["changes"]
            page_token = page.get("nextPageToken")
            new_start = page.get("newStartPageToken")
        assert pages == 2 and new_start is not None
        seen = {c["fileId"]: c for c in changes}
        assert len(seen) == len(changes) == 4
        assert seen[moved]["file"]["parents"] == [emu.id_for("b")]
        assert seen[deleted] == {"fileId": deleted, "removed": True}
        assert drive.changes().list(pageToken=new_start).execute()["changes"] == []

        about = drive.about().get(fields="user").execute()
        assert about["user"]["emailAddress"] == "emulator@drivepipe.local"

        emu.expire_tokens()
        with pytest.raises(errors.HttpError) as caught:
            drive.changes().list(pageToken=token).execute()
        assert caught.value.status_code == 400
        assert caught.value.error_details[0]["reason"] == "invalid"
        assert caught.value.error_details[0]["location"] == "pageToken"
