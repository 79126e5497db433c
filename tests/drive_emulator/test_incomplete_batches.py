"""The incomplete_batches fault: a files.list over several parents answers for one only."""

from __future__ import annotations

import pytest
import requests

from devstack.drive_emulator import DriveEmulator, FaultConfig
from tests.drive_emulator.helpers import call


def _batched(emu: DriveEmulator, http: requests.Session) -> dict[str, object]:
    big, dupes = emu.id_for("big"), emu.id_for("dupes")
    q = f"('{big}' in parents or '{dupes}' in parents) and trashed = false"
    response = call(http, emu, "files", q=q, fields="incompleteSearch,files(name,parents)")
    assert response.status_code == 200, response.text
    return response.json()


def _parents(body: dict[str, object]) -> set[str]:
    files = body["files"]
    assert isinstance(files, list)
    return {item["parents"][0] for item in files}


def test_batched_query_is_complete_without_the_fault(
    fresh_emu: DriveEmulator, http: requests.Session
) -> None:
    body = _batched(fresh_emu, http)
    assert body["incompleteSearch"] is False
    assert _parents(body) == {fresh_emu.id_for("big"), fresh_emu.id_for("dupes")}


@pytest.mark.parametrize(("mode", "flag"), [("flagged", True), ("silent", False)])
def test_batched_query_answers_for_the_first_parent_only(
    fresh_emu: DriveEmulator, http: requests.Session, mode: str, flag: bool
) -> None:
    fresh_emu.set_faults(FaultConfig(incomplete_batches=mode))
    body = _batched(fresh_emu, http)
    assert body["incompleteSearch"] is flag
    first = min(fresh_emu.id_for("big"), fresh_emu.id_for("dupes"))
    assert _parents(body) == {first}
    # A single-parent query is untouched.
    single = call(http, fresh_emu, "files", q=f"'{fresh_emu.id_for('dupes')}' in parents")
    assert len(single.json()["files"]) == 4
    assert single.json()["incompleteSearch"] is False


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="incomplete_batches"):
        FaultConfig(incomplete_batches="sometimes")
