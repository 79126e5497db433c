"""Layout rules, `.drive.json` validation, generate_tree, and the bundled sample folder."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest
import requests

from devstack.drive_emulator import DriveEmulator, TreeError, generate_tree
from tests.drive_emulator.helpers import SAMPLES, call, list_all


def _load_make_samples() -> ModuleType:
    """Import devstack/samples/make_samples.py (a script, not a package module) by path."""
    spec = importlib.util.spec_from_file_location(
        "make_samples", SAMPLES.parent / "make_samples.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_samples = _load_make_samples()


def test_committed_samples_equal_the_generator_output(tmp_path: Path) -> None:
    make_samples.write_samples(tmp_path)
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    committed = sorted(p.relative_to(SAMPLES) for p in SAMPLES.rglob("*") if p.is_file())
    assert generated == committed
    for rel in generated:
        assert (tmp_path / rel).read_bytes() == (SAMPLES / rel).read_bytes(), rel
    total = sum((SAMPLES / rel).stat().st_size for rel in committed)
    assert total < 200_000


def test_samples_as_served(http: requests.Session) -> None:
    with DriveEmulator(SAMPLES) as emu:
        files, _ = list_all(http, emu, fields="nextPageToken,files(name,mimeType,trashed)")
    by_name = {f["name"]: f for f in files}
    assert by_name["targets"]["mimeType"] == "application/vnd.google-apps.spreadsheet"
    assert by_name["README"]["mimeType"] == "application/vnd.google-apps.document"
    assert by_name["latest_sales"]["mimeType"] == "application/vnd.google-apps.shortcut"
    assert by_name["q0_draft.csv"]["trashed"] is True
    assert by_name["budget_2024.xlsx"]["mimeType"].endswith("spreadsheetml.sheet")
    assert by_name["prices.parquet"]["mimeType"] == "application/octet-stream"
    assert "ventes_été.csv" in by_name
    assert not any(name.startswith(".") for name in by_name)


def test_sample_contents_are_what_the_demo_expects() -> None:
    q1 = pd.read_csv(SAMPLES / "sales/2024/q1.csv")
    assert list(q1.columns) == make_samples.SALES_COLUMNS and len(q1) == 30
    with pytest.raises(pd.errors.ParserError):
        pd.read_csv(SAMPLES / "broken/bad.csv")
    europe = pd.read_csv(
        SAMPLES / "europe/ventes_été.csv", sep=";", encoding="latin-1", decimal=","
    )
    assert europe["Prix unitaire"].dtype == float and "Région" in europe.columns
    assert set(pd.read_excel(SAMPLES / "finance/budget_2024.xlsx", sheet_name=None)) == {
        "Budget",
        "Actuals",
    }


def write_overrides(folder: Path, doc: object) -> None:
    (folder / ".drive.json").write_text(json.dumps(doc))


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("{not json", "not valid JSON"),
        ({"files": {}}, "expected"),
        ({"entries": {"a.csv": {"colour": "red"}}}, "unknown keys ['colour']"),
        ({"entries": {"a.csv": "trashed"}}, "must be an object"),
        ({"entries": {"a.csv": {"shortcutTarget": "missing.csv"}}}, "does not exist"),
        ({"entries": {"a.csv": {"shortcutTarget": "sub/a.csv"}}}, "points at itself"),
    ],
)
def test_bad_overrides_fail_at_start_naming_the_file(
    tmp_path: Path, doc: object, message: str
) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.csv").write_text("x\n")
    if isinstance(doc, str):
        (tmp_path / "sub" / ".drive.json").write_text(doc)
    else:
        write_overrides(tmp_path / "sub", doc)
    with pytest.raises(TreeError, match="sub") as info:
        DriveEmulator(tmp_path)
    assert message in str(info.value)


def test_missing_root_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TreeError, match="not a directory"):
        DriveEmulator(tmp_path / "nope")
    with DriveEmulator(tmp_path) as emu, pytest.raises(KeyError, match=r"absent\.csv"):
        emu.id_for("absent.csv")


def test_generate_tree_writes_valid_files_of_exact_sizes(tmp_path: Path) -> None:
    paths = generate_tree(
        tmp_path, 30, min_size=200, max_size=5000, depth=2, fanout=3, seed=7, kinds=("csv", "jsonl")
    )
    assert len(paths) == 30 and len({p.parent for p in paths}) == 9
    assert all(len(p.relative_to(tmp_path).parts) == 3 for p in paths)
    for path in paths:
        size = path.stat().st_size
        assert 200 <= size <= 5000
        text = path.read_text()
        if path.suffix == ".csv":
            rows = list(csv.reader(io.StringIO(text)))
            assert rows[0][0] == "order_id" and all(len(r) == len(rows[0]) for r in rows)
        else:
            assert all(json.loads(line)["order_id"] >= 0 for line in text.splitlines())
    again = generate_tree(tmp_path / "again", 30, min_size=200, max_size=5000, depth=2, fanout=3,
                          seed=7, kinds=("csv", "jsonl"))  # fmt: skip
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in paths]


def test_generated_sizes_are_exact_and_served(tmp_path: Path, http: requests.Session) -> None:
    paths = generate_tree(tmp_path, 12, min_size=4096, max_size=4096, depth=1, fanout=4)
    assert {p.stat().st_size for p in paths} == {4096}
    with DriveEmulator(tmp_path) as emu:
        files, _ = list_all(http, emu, q="mimeType = 'text/csv'", fields="files(size)")
    assert [f["size"] for f in files] == ["4096"] * 12
    assert pd.read_csv(paths[0]).shape[1] == 7


@pytest.mark.parametrize(
    "kwargs",
    [{"kinds": ("xml",)}, {"min_size": 10}, {"min_size": 500, "max_size": 400}, {"fanout": 0}],
)
def test_generate_tree_rejects_bad_arguments(tmp_path: Path, kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        generate_tree(tmp_path, 1, **kwargs)  # type: ignore[arg-type]


def test_sheet_and_doc_names_drop_the_marker_suffix(
    emu: DriveEmulator, http: requests.Session
) -> None:
    body = call(http, emu, f"files/{emu.id_for('wide.gsheet.xlsx')}", fields="name,size").json()
    assert body == {"name": "wide"}
