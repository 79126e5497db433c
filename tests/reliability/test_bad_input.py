"""The bad-file corpus (cases.py) as ONE sync: each case gets its outcome, good files survive."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from devstack.drive_emulator import DriveEmulator, path_id
from shared.config import parse_config
from shared.run.manifest import RunManifest
from shared.run.sync import SyncRequest, run_sync
from shared.storage import open_storage
from shared.storage.base import check_key
from tests.reliability.cases import (
    CASES,
    GOOD,
    LONG_LINE,
    Case,
    build_corpus,
    corpus_pipeline_body,
)


def corpus_sync(root: Path, emulator: DriveEmulator, dest_url: str, cases=CASES) -> RunManifest:
    build_corpus(root, cases)
    body = corpus_pipeline_body(dest_url, emulator.root_id)
    pipeline = parse_config({"pipelines": {"rel": body}}).pipelines["rel"]
    return run_sync(SyncRequest(pipeline=pipeline))


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunManifest, str, Path]:
    """The whole corpus, synced once for every test of this module."""
    base = tmp_path_factory.mktemp("corpus")
    root = base / "drive"
    root.mkdir()
    mp = pytest.MonkeyPatch()
    with DriveEmulator(root) as emulator:
        mp.setenv("DRIVE_API_URL", emulator.url)
        mp.setenv("DRIVE_ACCESS_TOKEN", "corpus-token")
        mp.delenv("DRIVE_API_KEY", raising=False)
        try:
            return corpus_sync(root, emulator, str(base / "dest")), str(base / "dest"), root
        finally:
            mp.undo()


def by_disk_path(manifest: RunManifest) -> dict[str, object]:
    """Manifest records keyed by the case's on-disk path (the emulator's id is derived from it,
    while hostile Drive names change the record's path)."""
    ids = {path_id(c.path): c.path for c in CASES}
    return {ids[r.source_id]: r for r in manifest.inputs}


@pytest.mark.parametrize("case", CASES, ids=[c.path for c in CASES])
def test_each_case_gets_its_outcome(case, corpus_run) -> None:
    manifest, dest_url, root = corpus_run
    record = by_disk_path(manifest)[case.path]
    dest = open_storage(dest_url)
    assert record.status == case.status, record.error
    if case.status == "failed":
        assert case.error in (record.error or "")
        assert record.quarantine_key and record.quarantine_key.startswith("_quarantine/")
        # nothing lost: the exact bytes are kept
        assert dest.read(record.quarantine_key) == (root / case.path).read_bytes()
        assert record.output_keys == []
    else:
        assert record.rows_out == case.rows
        assert record.output_keys and all(dest.exists(k) for k in record.output_keys)


def test_the_run_survives_every_case_and_writes_every_good_file(corpus_run) -> None:
    manifest, _, _ = corpus_run
    counts = manifest.counts()
    assert counts["written"] == sum(c.status == "written" for c in CASES)
    assert counts["failed"] == sum(c.status == "failed" for c in CASES)
    assert len(GOOD) == 5 and all(by_disk_path(manifest)[c.path].status == "written" for c in GOOD)
    assert len(manifest.inputs) == len(CASES)


def test_formula_cells_are_escaped_in_csv_outputs(corpus_run) -> None:
    _, dest_url, _ = corpus_run
    text = open_storage(dest_url).read("rel/bad__formula.csv").decode()  # the table rel
    assert "'=cmd|' /C calc'!A0" in text
    assert "'@SUM(A1)" in text and "'-2+3" in text
    assert ",=" not in text and ',"=' not in text


def test_hostile_drive_names_stay_inside_the_destination(corpus_run) -> None:
    manifest, dest_url, _ = corpus_run
    for record in manifest.inputs:
        for key in record.output_keys:
            assert check_key(key) == key
            assert not key.startswith(("/", "..", "etc/"))
    stored = [o.key for o in open_storage(dest_url).list()]
    assert all(check_key(k) == k for k in stored)
    assert not (Path(dest_url).parent / "escape.csv").exists()
    assert not (Path(dest_url).parent / "win.csv").exists()


def test_a_single_10mb_line_is_read(
    emulator: DriveEmulator, drive_root: Path, tmp_path: Path
) -> None:
    manifest = corpus_sync(drive_root, emulator, str(tmp_path / "dest"), [LONG_LINE])
    record = manifest.inputs[0]
    assert record.status == "written", record.error
    assert record.rows_out == 1


def test_a_reader_bug_one_input_triggers_fails_only_that_input(
    emulator: DriveEmulator, drive_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader that overflows the stack on one input (as json did on deep nesting): that
    input fails with the reason and a quarantine copy, and the sync writes the others."""
    from shared.transform.readers import json as json_reader

    real_read_json = json_reader.read_json

    def buggy_read_json(data: bytes, *args: Any, **kwargs: Any) -> Any:
        if b"recurse" in data:
            raise RecursionError("maximum recursion depth exceeded")
        return real_read_json(data, *args, **kwargs)

    monkeypatch.setattr(json_reader, "read_json", buggy_read_json)
    poison = Case("bad/recurse.json", lambda: b'[{"id": 1, "amount": 2, "recurse": 1}]', "failed")
    build_corpus(drive_root, [*GOOD, poison])
    body = corpus_pipeline_body(str(tmp_path / "dest"), emulator.root_id)
    pipeline = parse_config({"pipelines": {"rel": body}}).pipelines["rel"]
    manifest = run_sync(SyncRequest(pipeline=pipeline))
    records = {r.path: r for r in manifest.inputs}
    failed = records["bad/recurse.json"]
    assert failed.status == "failed"
    assert (failed.error or "").startswith("RecursionError: maximum recursion depth exceeded")
    dest = open_storage(str(tmp_path / "dest"))
    assert dest.read(failed.quarantine_key or "") == poison.make()
    assert all(records[c.path].status == "written" for c in GOOD)
    assert manifest.counts()["written"] == len(GOOD)
