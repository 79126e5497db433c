"""Every output key has one owner, through real syncs against the Drive emulator.

In the ``files`` layout (the ``table`` layout's flat names: tests/tables/test_table_names.py),
each case of colliding names is in one tree: names equal after sanitising (NUL, newline and a
real ``a_b.csv``), ``a.csv`` beside ``a.xlsx``, a root file named ``sub\\b.csv`` beside
``sub/b.csv``, and a file ``k.tsv`` (written as ``k.csv``) beside a Drive folder ``k.csv/``.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from devstack.drive_emulator import DriveEmulator
from shared.cli import EXIT_OK, main
from shared.config import Pipeline, parse_config
from shared.drive.naming import id_tag
from shared.run.manifest import RunManifest
from shared.run.ownership import quarantine_path
from shared.run.sync import SyncRequest, run_sync
from shared.storage import open_storage
from tests.core.conftest import DriveTree, xlsx_bytes

# disk name → Drive name (the emulator serves these through .drive.json overrides)
RENAMED = {"nul.csv": "a\x00b.csv", "newline.csv": "a\nb.csv", "backslash.csv": "sub\\b.csv"}
FILES = ["nul.csv", "newline.csv", "a.csv", "a.xlsx", "backslash.csv", "sub/b.csv"]
FILES += ["k.tsv", "k.csv/x.csv"]


def _csv(src: str, sep: str = ",") -> str:
    return f"src{sep}n\n{src}{sep}1\n"


def build_tree(root: Path) -> None:
    """One small table per file, whose ``src`` column names the disk file it came from."""
    for name in FILES:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".xlsx"):
            path.write_bytes(xlsx_bytes({"Sheet1": pd.DataFrame({"src": [name], "n": [1]})}))
        else:
            path.write_text(_csv(name, "\t" if name.endswith(".tsv") else ","))
    overrides = {disk: {"name": drive} for disk, drive in RENAMED.items()}
    (root / ".drive.json").write_text(json.dumps({"entries": overrides}))


@pytest.fixture
def clash_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DriveTree]:
    root = tmp_path / "drive"
    root.mkdir()
    build_tree(root)
    with DriveEmulator(root) as emulator:
        monkeypatch.setenv("DRIVE_API_URL", emulator.url)
        monkeypatch.setenv("DRIVE_ACCESS_TOKEN", "test-token")
        monkeypatch.delenv("DRIVE_API_KEY", raising=False)
        yield DriveTree(root=root, emulator=emulator)


def pipeline_for(url: str) -> Pipeline:
    # The folder-shaped layout, where keys can also clash as file and folder; the table
    # layout's flat names are covered in tests/tables/test_table_names.py.
    body = {"source": {}, "steps": [], "output": {"url": url, "format": "csv", "layout": "files"}}
    return parse_config({"pipelines": {"clash": body}}).pipelines["clash"]


def sync(url: str, tree: DriveTree) -> RunManifest:
    return run_sync(SyncRequest(pipeline=pipeline_for(url), folder_id=tree.folder_id))


def sources(url: str, manifest: RunManifest) -> dict[str, str]:
    """Each written input's Drive path → the ``src`` its one output holds."""
    store = open_storage(url)
    found = {}
    for record in manifest.inputs:
        assert record.status == "written", (record.path, record.error)
        [key] = record.output_keys
        found[record.path] = pd.read_csv(io.BytesIO(store.read(key)), sep=",")["src"][0]
    return found


def test_every_colliding_input_gets_its_own_key(storage_url: str, clash_tree: DriveTree) -> None:
    manifest = sync(storage_url, clash_tree)
    by_path = {r.path: r for r in manifest.inputs}
    keys = [k for r in manifest.inputs for k in r.output_keys]
    assert len(keys) == len(set(keys)) == len(FILES)
    assert not any(b.startswith(a + "/") for a in keys for b in keys)
    # every output holds its own input's table
    expected = {
        "a_b.csv": "nul.csv",  # the listing made NUL "_"
        "a\nb.csv": "newline.csv",
        "a.csv": "a.csv",
        "a.xlsx": "a.xlsx",
        "sub\\b.csv": "backslash.csv",
        "sub/b.csv": "sub/b.csv",
        "k.tsv": "k.tsv",
        "k.csv/x.csv": "k.csv/x.csv",
    }
    assert sources(storage_url, manifest) == expected
    # who keeps the natural key, and who is renamed (the manifest says why)
    assert by_path["a_b.csv"].output_keys == ["a_b.csv"] and by_path["a_b.csv"].renamed is None
    assert "a_b.csv is also" in str(by_path["a\nb.csv"].renamed)
    assert by_path["sub/b.csv"].output_keys == ["sub/b.csv"]
    assert by_path["k.csv/x.csv"].output_keys == ["k.csv/x.csv"]
    renamed = {p: r for p, r in by_path.items() if r.renamed}
    assert set(renamed) == {"a\nb.csv", "a.csv", "a.xlsx", "sub\\b.csv", "k.tsv"}
    for path, record in renamed.items():
        tag = id_tag(record.source_id)
        assert record.output_keys[0].endswith(f"~{tag}.csv"), path
        assert record.output_path and f"~{tag}" in record.output_path
    assert "is a folder of" in str(renamed["k.tsv"].renamed)
    assert "is also" in str(renamed["a.csv"].renamed)
    saved = json.loads(open_storage(storage_url).read(f"_runs/{manifest.run_id}.json"))
    assert {r["path"] for r in saved["inputs"] if r["renamed"]} == set(renamed)


def test_names_are_the_same_on_every_run_and_an_owner_keeps_its_key(
    clash_tree: DriveTree, tmp_path: Path
) -> None:
    url = str(tmp_path / "out")
    first = sync(url, clash_tree)
    keys = {r.path: r.output_keys for r in first.inputs}
    # edited: fetched again, and written to the same keys
    clash_tree.write("a.csv", _csv("a.csv v2"))
    clash_tree.write("newline.csv", _csv("newline.csv v2"))
    second = sync(url, clash_tree)
    assert {r.path: r.status for r in second.inputs}["a.csv"] == "written"
    assert {r.path: r.output_keys for r in second.inputs} == keys
    # a newcomer never takes a key another input owns: here, the one a.csv's twin left
    (clash_tree.root / "a.xlsx").unlink()
    clash_tree.write("A.json", '[{"src": "A.json", "n": 1}]')
    third = sync(url, clash_tree)
    by_path = {r.path: r for r in third.inputs}
    assert by_path["a.csv"].output_keys == keys["a.csv"]  # keeps its tag, though alone now
    assert by_path["A.json"].output_keys == ["A.csv"]  # a~... and a.csv are taken; A.csv not
    store = open_storage(url)
    assert pd.read_csv(io.BytesIO(store.read(keys["a.csv"][0])))["src"][0] == "a.csv v2"


def test_a_new_file_does_not_take_a_key_the_state_gives_another_id(
    clash_tree: DriveTree, tmp_path: Path
) -> None:
    url = str(tmp_path / "out")
    sync(url, clash_tree)
    clash_tree.write("sub/b.tsv", _csv("sub/b.tsv", "\t"))  # would write sub/b.csv too
    manifest = sync(url, clash_tree)
    by_path = {r.path: r for r in manifest.inputs}
    assert by_path["sub/b.csv"].status == "skipped_unchanged"
    new = by_path["sub/b.tsv"]
    assert new.status == "written" and new.renamed and "already" in new.renamed
    assert new.output_keys == [f"sub/b~{id_tag(new.source_id)}.csv"]
    store = open_storage(url)
    assert pd.read_csv(io.BytesIO(store.read("sub/b.csv")))["src"][0] == "sub/b.csv"


def test_a_real_name_beside_names_that_sanitise_to_it(
    clash_tree: DriveTree, tmp_path: Path
) -> None:
    url = str(tmp_path / "out")
    clash_tree.write("a_b.csv", _csv("a_b.csv"))
    manifest = sync(url, clash_tree)
    got = sources(url, manifest)
    assert sorted(got.values()) == sorted([*FILES, "a_b.csv"])
    keys = [k for r in manifest.inputs for k in r.output_keys]
    assert len(set(keys)) == len(keys)
    # the listing tags the real a_b.csv and the NUL one alike; the newline one keeps a_b.csv
    by_src = {src: path for path, src in got.items()}
    assert by_src["a_b.csv"].startswith("a_b~") and by_src["nul.csv"].startswith("a_b~")
    assert {r.path: r.output_keys for r in manifest.inputs}["a\nb.csv"] == ["a_b.csv"]


def test_the_cli_sync_of_colliding_names_exits_0_on_a_local_disk(
    clash_tree: DriveTree, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "out"
    config = tmp_path / "p.toml"
    config.write_text(
        f'[pipelines.clash]\nsource = {{ folder_id = "{clash_tree.folder_id}" }}\n'
        f'output = {{ url = "{dest}", format = "csv", layout = "files" }}\n'
    )
    assert main(["sync", "--config", str(config), "--json"]) == EXIT_OK  # not 3: unreachable
    summary = json.loads(capsys.readouterr().out)
    assert summary["counts"]["written"] == len(FILES)
    assert (dest / "k.csv" / "x.csv").is_file()


def test_a_folder_appearing_under_a_file_key_the_state_keeps(
    clash_tree: DriveTree, tmp_path: Path
) -> None:
    url = str(tmp_path / "out")
    (clash_tree.root / "k.csv" / "x.csv").unlink()
    (clash_tree.root / "k.csv").rmdir()
    first = sync(url, clash_tree)
    assert {r.path: r.output_keys for r in first.inputs}["k.tsv"] == ["k.csv"]
    # The folder appears; k.tsv, unchanged, keeps k.csv: the new file fails clearly, each run.
    clash_tree.write("k.csv/x.csv", _csv("k.csv/x.csv"))
    second = sync(url, clash_tree)
    by_path = {r.path: r for r in second.inputs}
    assert by_path["k.tsv"].status == "skipped_unchanged"
    inner = by_path["k.csv/x.csv"]
    assert inner.status == "failed" and inner.output_keys == []
    assert "k.csv/x.csv would be under" in str(inner.error)
    assert "rename one of them in Drive" in str(inner.error)
    # fetched only for a quarantine copy of its exact bytes, under a flat name that cannot
    # clash either; no state entry, so the next run tries it again
    store = open_storage(url)
    assert inner.quarantine_key == f"_quarantine/{second.run_id}/" + quarantine_path(
        inner.source_id, "k.csv/x.csv"
    )
    assert store.read(inner.quarantine_key) == (clash_tree.root / "k.csv" / "x.csv").read_bytes()
    assert "/" not in inner.quarantine_key.split(f"{second.run_id}/", 1)[1]
    entries = json.loads(store.read("_state/clash.json"))["inputs"].values()
    assert "k.csv/x.csv" not in {e["path"] for e in entries}
    # k.tsv is edited: it is renamed now (the upper side yields), and the folder's file is
    # written by the next run, once k.csv is gone.
    clash_tree.write("k.tsv", _csv("k.tsv v2", "\t"))
    third = sync(url, clash_tree)
    by_path = {r.path: r for r in third.inputs}
    tag = id_tag(by_path["k.tsv"].source_id)
    assert by_path["k.tsv"].output_keys == [f"k~{tag}.csv"]
    assert "the next run" in str(by_path["k.csv/x.csv"].error)
    fourth = sync(url, clash_tree)
    by_path = {r.path: r for r in fourth.inputs}
    assert by_path["k.csv/x.csv"].status == "written"
    assert by_path["k.csv/x.csv"].output_keys == ["k.csv/x.csv"]
    assert by_path["k.tsv"].status == "skipped_unchanged"
    keys = {o.key for o in open_storage(url).list() if not o.key.startswith("_")}
    assert {"k.csv/x.csv", f"k~{tag}.csv"} <= keys and "k.csv" not in keys


def test_a_key_an_old_state_gave_two_inputs_is_not_deleted_when_one_moves(
    clash_tree: DriveTree, tmp_path: Path
) -> None:
    url = str(tmp_path / "out")
    first = sync(url, clash_tree)
    ids = {r.path: r.source_id for r in first.inputs}
    # As the state of a run before this rule could be: a.csv and a.xlsx both own a.csv.
    store = open_storage(url)
    doc = json.loads(store.read("_state/clash.json"))
    for path in ("a.csv", "a.xlsx"):
        entry = doc["inputs"][f"{ids[path]}:{path}"]
        entry["output_keys"], entry["output_path"] = ["a.csv"], None
    store.write("_state/clash.json", json.dumps(doc).encode())
    store.write("a.csv", _csv("a.xlsx").encode())
    clash_tree.write("a.csv", _csv("a.csv v2"))
    second = sync(url, clash_tree)
    moved = {r.path: r for r in second.inputs}["a.csv"]
    assert moved.output_keys == [f"a~{id_tag(ids['a.csv'])}.csv"]
    assert moved.renamed and "already" in moved.renamed
    assert pd.read_csv(io.BytesIO(store.read("a.csv")))["src"][0] == "a.xlsx"  # kept
    state = json.loads(store.read("_state/clash.json"))["inputs"]
    for entry in state.values():
        for key in entry["output_keys"]:
            assert store.exists(key), key
