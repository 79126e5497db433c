"""DriveClient's changes feed (start_page_token, changes, iter_changes, get_file) over HTTP."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shared.drive import DriveClient, RetryPolicy
from shared.drive.changes import is_token_refusal
from shared.errors import ChangesTokenInvalid, DriveError
from tests.drive.conftest import write_overrides, write_tree

SHARED = "0AClientChangesDrive9PVA"
T0 = 1_700_000_000


def sample(root: Path) -> Path:
    write_tree(
        root,
        {
            "synced/a.csv": "x\n1\n",
            "synced/b.csv": "x\n2\n",
            "synced/c.csv": "x\n3\n",
            "synced/d.csv": "x\n4\n",
            "synced/sub/e.csv": "x\n5\n",
            "synced/sub/f.csv": "x\n6\n",
            "elsewhere/keep.csv": "k\n",
        },
    )
    for path in root.rglob("*.csv"):
        os.utime(path, (T0, T0))
    return root


def test_no_change_is_one_request_and_the_same_token(
    tmp_path: Path, emulator_api: Any, client_for: Callable[..., DriveClient]
) -> None:
    with emulator_api.DriveEmulator(sample(tmp_path / "root")) as emu:
        client = client_for(emu.url)
        token = client.start_page_token()
        before = client.stats.requests
        page = client.changes(token)
        assert page.changes == () and page.new_start_page_token == token
        assert page.next_page_token is None and page.pages == 1
        assert client.stats.requests - before == 1


def test_the_feed_reports_each_kind_of_change(
    tmp_path: Path, emulator_api: Any, client_for: Callable[..., DriveClient]
) -> None:
    root = sample(tmp_path / "root")
    with emulator_api.DriveEmulator(root, page_size_cap=2) as emu:
        client = client_for(emu.url)
        ids = {rel: emu.id_for(f"synced/{rel}") for rel in ("a.csv", "b.csv", "c.csv", "d.csv")}
        ids["sub/e.csv"], ids["sub/f.csv"] = (
            emu.id_for("synced/sub/e.csv"),
            emu.id_for("synced/sub/f.csv"),
        )
        token = client.start_page_token()
        (root / "synced/a.csv").unlink()  # delete
        write_overrides(root / "synced", {"b.csv": {"trashed": True}})  # trash
        os.rename(root / "synced/c.csv", root / "synced/c-renamed.csv")  # rename
        os.rename(root / "synced/d.csv", root / "synced/sub/d.csv")  # move
        (root / "synced/sub/e.csv").write_text("x\n5\n55\n")  # edit
        os.utime(root / "synced/sub/e.csv", (T0 + 60, T0 + 60))
        os.rename(root / "synced/sub/f.csv", root / "elsewhere/f.csv")  # out of the folder
        (root / "synced/new.csv").write_text("x\n7\n")  # add
        before = client.stats.requests
        page = client.changes(token)
        assert page.pages == client.stats.requests - before == 4  # 7 changes, 2 per page
        assert page.new_start_page_token and page.next_page_token is None
        seen = {c.file_id: c for c in page.changes}
        assert len(seen) == len(page.changes) == 7
        assert seen[ids["a.csv"]].removed and seen[ids["a.csv"]].file is None
        trashed = seen[ids["b.csv"]]
        assert not trashed.removed and trashed.trashed and trashed.file is not None
        renamed = seen[ids["c.csv"]].file
        assert renamed is not None and renamed.name == "c-renamed.csv"
        assert seen[ids["d.csv"]].parents == (emu.id_for("synced/sub"),)
        edited = seen[ids["sub/e.csv"]].file
        assert edited is not None and edited.size == 7 and edited.md5 and edited.sha256
        assert seen[ids["sub/f.csv"]].parents == (emu.id_for("elsewhere"),)
        added = [c for fid, c in seen.items() if fid not in ids.values()]
        assert [c.file.name for c in added if c.file] == ["new.csv"]
        assert all(c.time.endswith("Z") for c in page.changes)
        # the next run, from the stored token, sees nothing
        assert client.changes(page.new_start_page_token or "").changes == ()


def test_iter_changes_yields_each_page(
    tmp_path: Path, emulator_api: Any, client_for: Callable[..., DriveClient]
) -> None:
    root = sample(tmp_path / "root")
    with emulator_api.DriveEmulator(root, page_size_cap=2) as emu:
        client = client_for(emu.url)
        token = client.start_page_token()
        for i in range(5):
            (root / f"synced/n{i}.csv").write_text("x\n")
        pages = list(client.iter_changes(token))
        assert [len(p.changes) for p in pages] == [2, 2, 1]
        assert all(p.next_page_token and not p.new_start_page_token for p in pages[:-1])
        assert pages[-1].new_start_page_token and not pages[-1].next_page_token


def test_a_refused_token_raises_changes_token_invalid_without_retries(
    tmp_path: Path, emulator_api: Any, client_for: Callable[..., DriveClient]
) -> None:
    with emulator_api.DriveEmulator(sample(tmp_path / "root")) as emu:
        client = client_for(emu.url)
        token = client.start_page_token()
        emu.expire_tokens()
        emu.reset_stats()
        with pytest.raises(ChangesTokenInvalid) as caught:
            client.changes(token)
        error = caught.value
        assert isinstance(error, DriveError) and not error.retryable
        assert (error.status, error.reason, error.location) == (400, "invalid", "pageToken")
        assert emu.stats.snapshot()["requests"] == {"changes": 1}
        with pytest.raises(ChangesTokenInvalid):
            client.changes("not-a-token")
        emu.set_faults(emulator_api.FaultConfig(expire_page_tokens=True))
        with pytest.raises(ChangesTokenInvalid):
            client.changes(client.start_page_token())


def test_transient_errors_are_retried_like_every_call(
    tmp_path: Path, emulator_api: Any, client_for: Callable[..., DriveClient]
) -> None:
    root = sample(tmp_path / "root")
    with emulator_api.DriveEmulator(root, page_size_cap=1) as emu:
        client = client_for(emu.url, retry=RetryPolicy(max_attempts=8, base_delay=0.001))
        token = client.start_page_token()
        for i in range(4):
            (root / f"synced/n{i}.csv").write_text("x\n")
        emu.set_faults(emulator_api.FaultConfig(rate=0.5, kinds=("503", "429", "reset"), seed=3))
        page = client.changes(token)
        assert len(page.changes) == 4 and page.pages == 4
        assert client.stats.total_retries > 0


def test_a_failure_part_way_raises_instead_of_a_partial_feed(
    tmp_path: Path, emulator_api: Any, client_for: Callable[..., DriveClient]
) -> None:
    root = sample(tmp_path / "root")
    with emulator_api.DriveEmulator(root, page_size_cap=1) as emu:
        client = client_for(emu.url, retry=RetryPolicy(max_attempts=1))
        token = client.start_page_token()
        for i in range(3):
            (root / f"synced/n{i}.csv").write_text("x\n")
        pages = client.iter_changes(token)
        assert len(next(pages).changes) == 1
        emu.set_faults(emulator_api.FaultConfig(rate=1.0, kinds=("503",)))
        with pytest.raises(DriveError) as caught:
            next(pages)
        assert caught.value.status == 503
        with pytest.raises(DriveError):
            client.changes(token)


def test_a_shared_drive_feed_and_get_file(
    tmp_path: Path, emulator_api: Any, client_for: Callable[..., DriveClient]
) -> None:
    root = sample(tmp_path / "root")
    with emulator_api.DriveEmulator(root, drive_id=SHARED) as emu:
        client = client_for(emu.url)
        token = client.start_page_token(drive_id=SHARED)
        (root / "synced/sub/new.csv").write_text("x\n")
        page = client.changes(token, drive_id=SHARED)
        (change,) = page.changes
        assert change.drive_id == SHARED and change.parents == (emu.id_for("synced/sub"),)
        parent = client.get_file(change.parents[0], fields="id,name,parents,mimeType")
        assert parent == {
            "id": emu.id_for("synced/sub"),
            "name": "sub",
            "parents": [emu.id_for("synced")],
            "mimeType": "application/vnd.google-apps.folder",
        }
        with pytest.raises(DriveError) as caught:
            client.start_page_token(drive_id="0Aunknown")
        assert caught.value.status == 404


def test_a_shortcut_change_names_its_target(
    tmp_path: Path, emulator_api: Any, client_for: Callable[..., DriveClient]
) -> None:
    root = sample(tmp_path / "root")
    with emulator_api.DriveEmulator(root) as emu:
        client = client_for(emu.url)
        token = client.start_page_token()
        (root / "synced/link.shortcut").write_text("")
        write_overrides(
            root / "synced", {"link.shortcut": {"shortcutTarget": "elsewhere/keep.csv"}}
        )
        (change,) = client.changes(token).changes
        assert change.shortcut_target_id == emu.id_for("elsewhere/keep.csv")
        assert change.file is not None and change.file.name == "link"


@pytest.mark.parametrize(
    ("status", "reason", "location", "refused"),
    [
        (410, None, None, True),
        (400, "invalid", "pageToken", True),
        (400, "invalid", None, True),
        (400, "badRequest", "pageToken", True),
        (400, "invalid", "pageSize", False),
        (404, "notFound", "driveId", False),
        (503, "backendError", None, False),
    ],
)
def test_which_errors_are_token_refusals(
    status: int, reason: str | None, location: str | None, refused: bool
) -> None:
    error = DriveError("x", status=status, reason=reason, location=location)
    assert is_token_refusal(error) is refused
