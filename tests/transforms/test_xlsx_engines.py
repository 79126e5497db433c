"""XLSX: calamine by default, openpyxl as fallback; both behind the zip-bomb and extent guards."""

from __future__ import annotations

import datetime as dt
import io
import zipfile

import pandas as pd
import pytest

from shared.errors import ReadError
from shared.transform.readers import ReadOptions, read_table
from shared.transform.readers import excel as excel_module
from shared.transform.readers.excel import check_sheet_extents, excel_engine
from shared.transform.readers.options import ExcelOptions
from tests.transforms.test_readers import make_xlsx

ENGINES = ("calamine", "openpyxl")
NS = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
HEADER_ROW = '<row r="1"><c r="A1" t="inlineStr"><is><t>id</t></is></c></row>'


def with_sheet_xml(body: str, prolog: str = "") -> bytes:
    """A real workbook whose first sheet's XML is replaced by ``body`` (inside sheetData)."""
    original = make_xlsx({"S": pd.DataFrame({"id": [1]})})
    xml = f'<?xml version="1.0"?>{prolog}<worksheet {NS}><sheetData>{body}</sheetData></worksheet>'
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(original)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "xl/worksheets/sheet1.xml":
                data = xml.encode()
            dst.writestr(info, data)
    return out.getvalue()


def read(
    data: bytes, engine: str, excel: dict | None = None, **read_options: object
) -> pd.DataFrame:
    excel = {**(excel or {}), "engine": engine}
    options = ReadOptions.model_validate({**read_options, "excel": excel})
    return read_table(data, "xlsx", options)[0].frame


def test_calamine_is_the_default_engine_and_openpyxl_the_fallback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert excel_engine(ExcelOptions()) == "calamine"
    assert excel_engine(ExcelOptions(engine="openpyxl")) == "openpyxl"
    monkeypatch.setattr(excel_module.importlib.util, "find_spec", lambda name: None)
    assert excel_engine(ExcelOptions()) == "openpyxl"


def test_both_engines_read_the_same_table() -> None:
    frame = pd.DataFrame(
        {
            "id": [1, 2, 3],
            "amount": [9.5, 3.0, None],
            "name": ["a", None, "c"],
            "day": [dt.datetime(2024, 1, 1), dt.datetime(2024, 2, 29), dt.datetime(2024, 3, 1)],
        }
    )
    data = make_xlsx({"S": frame})
    calamine, openpyxl = (read(data, engine) for engine in ENGINES)
    assert list(calamine.columns) == list(openpyxl.columns) == ["id", "amount", "name", "day"]
    for name in calamine.columns:
        assert calamine[name].tolist() == openpyxl[name].tolist(), name


@pytest.mark.parametrize("engine", ENGINES)
def test_a_far_corner_cell_is_refused_before_the_engine_allocates_it(engine: str) -> None:
    # calamine would abort the process allocating 512 GiB; openpyxl pads a million rows
    corner = HEADER_ROW + '<row r="1048576"><c r="XFD1048576"><v>1</v></c></row>'
    with pytest.raises(ReadError, match="16,384 columns, over the limit of 10,000"):
        read(with_sheet_xml(corner), engine)
    tall = HEADER_ROW + '<row r="1048576"><c r="Z1048576"><v>1</v></c></row>'
    with pytest.raises(ReadError, match=r"1,048,576 rows x 26 columns .* over the limit"):
        read(with_sheet_xml(tall), engine)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_wide_sheet_is_refused_naming_its_width(engine: str) -> None:
    data = make_xlsx({"S": pd.DataFrame([list(range(30))], columns=[f"c{i}" for i in range(30)])})
    with pytest.raises(ReadError, match="30 columns, over the limit of 20"):
        read(data, engine, max_columns=20)
    assert read(data, engine, max_columns=30).shape == (1, 30)


def test_the_cell_limit_is_configurable() -> None:
    data = make_xlsx({"S": pd.DataFrame({"a": range(100), "b": range(100)})})
    with pytest.raises(ReadError, match="101 rows x 2 columns = 202 cells"):
        read(data, "calamine", excel={"max_cells": 200})


def test_the_extent_scan_reads_references_not_lookalikes() -> None:
    body = (
        HEADER_ROW + '<row r="2" spans="1:3"><c r="C2" s="1" t="inlineStr">'
        '<is><t>ref="XFD9" paper="ZZZ1"</t></is></c></row>'
    )
    check_sheet_extents(with_sheet_xml(body), max_columns=3, max_cells=6)
    with pytest.raises(ReadError, match="3 columns"):
        check_sheet_extents(with_sheet_xml(body), max_columns=2, max_cells=100)


def test_a_reference_split_between_scan_pieces_still_counts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(excel_module, "SCAN_BYTES", 7)
    body = HEADER_ROW + "".join(f'<row r="{r}"><c r="AB{r}"><v>1</v></c></row>' for r in (2, 3))
    with pytest.raises(ReadError, match="28 columns, over the limit of 27"):
        check_sheet_extents(with_sheet_xml(body), max_columns=27, max_cells=1000)


@pytest.mark.parametrize("scan_bytes", [7, 16 * 1024 * 1024])
def test_cells_without_references_are_counted(
    monkeypatch: pytest.MonkeyPatch, scan_bytes: int
) -> None:
    """``r`` is optional: rows and cells without it name no extent, but they still count
    (the 0.9 MB workbook of 180 MB sheet XML of issue 19 had none)."""
    monkeypatch.setattr(excel_module, "SCAN_BYTES", scan_bytes)
    body = HEADER_ROW + "<row><c><v>1</v></c><c><v>2</v></c></row>" * 50
    check_sheet_extents(with_sheet_xml(body), max_columns=10, max_cells=101)
    with pytest.raises(ReadError, match="has 101 cells, over the limit of 100"):
        check_sheet_extents(with_sheet_xml(body), max_columns=10, max_cells=100)


XXE = '<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
LAUGHS = (
    '<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa">'
    + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(9))
    + "]>"
)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("prolog", "entity"), [(XXE, "x"), (LAUGHS, "j")], ids=["xxe", "laughs"])
def test_xml_entities_are_never_expanded(engine: str, prolog: str, entity: str) -> None:
    body = HEADER_ROW + f'<row r="2"><c r="A2" t="inlineStr"><is><t>&{entity};</t></is></c></row>'
    try:
        frame = read(with_sheet_xml(body, prolog), engine)
    except ReadError:
        return  # refused: fine
    cells = "".join(str(v) for v in frame["id"].tolist())
    assert "root:" not in cells and "aaaaaaaaaa" not in cells
