"""Integration: DriveClient.walk against the Drive emulator on 127.0.0.1."""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.drive.naming import id_tag
from shared.errors import DriveError
from tests.drive.conftest import write_overrides, write_tree


def _paths(files: object) -> set[str]:
    return {f.path for f in files}  # type: ignore[attr-defined]


def test_nested_folders_larger_than_a_page_are_listed_completely(
    emulator_api, client_for, tmp_path: Path
) -> None:
    files = {f"big/f{i:02d}.csv": f"id\n{i}\n" for i in range(23)}
    files.update({f"big/deeper/g{i}.json": f'{{"i": {i}}}' for i in range(9)})
    files.update({"top.csv": "a\n1\n", "empty/.keep": ""})
    write_tree(tmp_path, files)
    with emulator_api.DriveEmulator(tmp_path, page_size_cap=4) as emu:
        client = client_for(emu.url)
        walked = list(client.walk(emu.root_id))
    expected = {p for p in files if not p.endswith(".keep")}
    assert _paths(walked) == expected and len(walked) == len(expected)
    by_path = {f.path: f for f in walked}
    for rel in ("big/f07.csv", "big/deeper/g3.json", "top.csv"):
        data = (tmp_path / rel).read_bytes()
        assert by_path[rel].size == len(data)
        assert by_path[rel].md5 == hashlib.md5(data).hexdigest()
        assert not by_path[rel].native and by_path[rel].skip_reason is None
    # 23 + 1 items in big/ with pages of 4 need at least 6 list requests on their own.
    assert client.stats.requests >= 6 + 3 + 1


def test_shared_drive_is_listed_with_drive_corpora(emulator_api, client_for, tmp_path) -> None:
    write_tree(tmp_path, {"a.csv": "x\n1\n", "sub/b.csv": "x\n2\n"})
    with emulator_api.DriveEmulator(tmp_path, drive_id="0ASharedDrive") as emu:
        client = client_for(emu.url)
        explicit = _paths(client.walk(emu.root_id, drive_id="0ASharedDrive"))
        detected = _paths(client.walk(emu.root_id))  # driveId read from the root folder
        with pytest.raises(DriveError) as info:
            list(client.walk(emu.root_id, drive_id="0ANoSuchDrive"))
    assert explicit == detected == {"a.csv", "sub/b.csv"}
    assert info.value.status == 404 and client.stats.total_retries == 0


def test_native_files_shortcuts_and_trash(emulator_api, client_for, tmp_path) -> None:
    write_tree(
        tmp_path,
        {
            "Budget.gsheet.csv": "region,amount\nnorth,10\n",
            "Notes.gdoc.txt": "hello",
            "data/target.csv": "t\n1\n",
            "data/locked.csv": "l\n1\n",
            "data/old.csv": "o\n1\n",
            "trash/inside.csv": "i\n1\n",
            "link.shortcut": "",
            "data_link.shortcut": "",
            "data/loop.shortcut": "",
        },
    )
    write_overrides(
        tmp_path,
        {
            "link.shortcut": {"name": "link.csv", "shortcutTarget": "data/target.csv"},
            "data_link.shortcut": {"name": "mirror", "shortcutTarget": "data"},
            "trash": {"trashed": True},
        },
    )
    write_overrides(
        tmp_path / "data",
        {
            "locked.csv": {"canDownload": False},
            "old.csv": {"trashed": True},
            "loop.shortcut": {"name": "up", "shortcutTarget": "data"},  # a folder cycle
        },
    )
    with emulator_api.DriveEmulator(tmp_path) as emu:
        walked = {f.path: f for f in client_for(emu.url).walk(emu.root_id)}
        target_id = emu.id_for("data/target.csv")
    # "mirror" points at data/, which is walked once only (whichever path reached it first).
    data_prefix = "data" if "data/target.csv" in walked else "mirror"
    assert set(walked) == {
        "Budget",
        "Notes",
        "link.csv",
        f"{data_prefix}/target.csv",
        f"{data_prefix}/locked.csv",
    }
    assert walked["Budget"].native and walked["Budget"].skip_reason is None
    assert walked["Notes"].native and "document" in (walked["Notes"].skip_reason or "")
    assert "canDownload" in (walked[f"{data_prefix}/locked.csv"].skip_reason or "")
    link = walked["link.csv"]
    assert link.id == target_id and link.size == len(b"t\n1\n") and link.mime_type == "text/csv"


def test_duplicate_names_get_distinct_stable_paths(emulator_api, client_for, tmp_path) -> None:
    write_tree(tmp_path, {"r1.csv": "a\n1\n", "r2.csv": "a\n2\n", "solo.csv": "s\n"})
    write_overrides(tmp_path, {"r1.csv": {"name": "report.csv"}, "r2.csv": {"name": "report.csv"}})
    with emulator_api.DriveEmulator(tmp_path, page_size_cap=1) as emu:
        client = client_for(emu.url)
        first = {f.path: f.id for f in client.walk(emu.root_id)}
        second = {f.path: f.id for f in client.walk(emu.root_id)}
        ids = [emu.id_for("r1.csv"), emu.id_for("r2.csv")]
    assert first == second
    assert set(first) == {"solo.csv", *(f"report~{id_tag(i)}.csv" for i in ids)}


def test_filters_apply_to_paths_types_and_modified_time(emulator_api, client_for, tmp_path) -> None:
    write_tree(
        tmp_path,
        {
            "in/a.csv": "a\n",
            "in/b.xlsx": b"PK",
            "in/deep/c.csv": "c\n",
            "in/deep/d.parquet": b"PAR1",
            "archive/e.csv": "e\n",
            "Sheet.gsheet.csv": "s\n1\n",
        },
    )
    old = datetime(2020, 1, 1, tzinfo=UTC).timestamp()
    os.utime(tmp_path / "in/a.csv", (old, old))
    os.utime(tmp_path / "archive/e.csv", (old, old))
    with emulator_api.DriveEmulator(tmp_path) as emu:
        client = client_for(emu.url)

        def walk(**kwargs: object) -> set[str]:
            return _paths(client.walk(emu.root_id, **kwargs))

        assert walk(include=["**/*.csv"], exclude=["archive/**"]) == {"in/a.csv", "in/deep/c.csv"}
        assert walk(include=["in/*"]) == {"in/a.csv", "in/b.xlsx"}
        assert walk(mime_types=["parquet", "gsheet"]) == {"in/deep/d.parquet", "Sheet"}
        assert walk(mime_types=["text/csv"]) == {"in/a.csv", "in/deep/c.csv", "archive/e.csv"}
        recent = walk(modified_since=datetime(2021, 1, 1, tzinfo=UTC))
        assert recent == {"in/b.xlsx", "in/deep/c.csv", "in/deep/d.parquet", "Sheet"}


def test_missing_root_fails_at_once(emulator_api, client_for, tmp_path) -> None:
    write_tree(tmp_path, {"a.csv": "a\n"})
    with emulator_api.DriveEmulator(tmp_path) as emu:
        client = client_for(emu.url)
        with pytest.raises(DriveError) as info:
            list(client.walk("no-such-folder-id"))
        with pytest.raises(DriveError, match="not a folder"):
            list(client.walk(emu.id_for("a.csv")))
    assert info.value.status == 404 and "no-such-folder-id" in info.value.message
    assert client.stats.total_retries == 0 and client.stats.max_attempts == 1


def test_many_folders_are_listed_in_grouped_queries(emulator_api, client_for, tmp_path) -> None:
    # 3 x 6 leaf folders with two files each, walked by 2 threads, so folders are grouped.
    files = {
        f"d{a}/e{b}/f{c}.csv": f"{a}{b}{c}\n" for a in range(3) for b in range(6) for c in (0, 1)
    }
    files["d0/e0/report.csv"] = "dup-a\n"
    write_tree(tmp_path, files)
    write_overrides(tmp_path / "d0/e0", {"report.csv": {"name": "f0.csv"}})  # a duplicate name
    with emulator_api.DriveEmulator(tmp_path, page_size_cap=5) as emu:
        client = client_for(emu.url, concurrency=1)
        walked = {f.path: f.id for f in client.walk(emu.root_id)}
        ids = [emu.id_for("d0/e0/f0.csv"), emu.id_for("d0/e0/report.csv")]
    expected = set(files) - {"d0/e0/f0.csv", "d0/e0/report.csv"}
    expected |= {f"d0/e0/f0~{id_tag(i)}.csv" for i in ids}
    assert set(walked) == expected
    # One query per folder costs 26 requests here (get + root page + 3 x 2 pages + 18 x 1);
    # grouped queries (pages of 5 over several folders' children) cost 17.
    assert client.stats.requests <= 20
