"""files.export: conversions, refusals, size limit."""

from __future__ import annotations

import csv
import io

import pytest
import requests
from openpyxl import load_workbook

from devstack.drive_emulator import DriveEmulator
from tests.drive_emulator.helpers import call, error_of

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def export(emu: DriveEmulator, http: requests.Session, path: str, mime: str) -> requests.Response:
    return call(http, emu, f"files/{emu.id_for(path)}/export", mimeType=mime)


def test_csv_backed_sheet_exports_csv_tsv_and_xlsx(
    emu: DriveEmulator, http: requests.Session
) -> None:
    source = (emu.tree.root / "targets.gsheet.csv").read_bytes()
    as_csv = export(emu, http, "targets.gsheet.csv", "text/csv")
    assert as_csv.status_code == 200 and as_csv.headers["Content-Type"] == "text/csv"
    assert as_csv.content == source
    rows = list(csv.reader(io.StringIO(source.decode())))
    as_tsv = export(emu, http, "targets.gsheet.csv", "text/tab-separated-values")
    assert list(csv.reader(io.StringIO(as_tsv.text), delimiter="\t")) == rows
    as_xlsx = export(emu, http, "targets.gsheet.csv", XLSX)
    sheet = load_workbook(io.BytesIO(as_xlsx.content)).worksheets[0]
    values = [list(r) for r in sheet.iter_rows(values_only=True)]
    assert values[0] == rows[0]
    assert values[1] == ["North", 120000, 132000]  # numbers typed in a Sheet are numbers


def test_xlsx_backed_sheet_exports_first_sheet_as_csv(
    emu: DriveEmulator, http: requests.Session
) -> None:
    response = export(emu, http, "wide.gsheet.xlsx", "text/csv")
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == ["Department", "Month", "Budget"]  # the first sheet, not "Actuals"
    assert len(rows) == 19
    full = export(emu, http, "wide.gsheet.xlsx", XLSX)
    assert load_workbook(io.BytesIO(full.content)).sheetnames == ["Budget", "Actuals"]


def test_doc_exports_plain_text_but_not_csv(emu: DriveEmulator, http: requests.Session) -> None:
    text = export(emu, http, "README.gdoc.txt", "text/plain")
    assert text.status_code == 200
    assert text.content == (emu.tree.root / "README.gdoc.txt").read_bytes()
    refused = export(emu, http, "README.gdoc.txt", "text/csv")
    assert refused.status_code == 400
    detail = error_of(refused)
    assert (detail["reason"], detail["location"]) == ("badRequest", "convertTo")
    assert detail["message"] == "The requested conversion is not supported."


def test_missing_target_and_unrendered_formats(emu: DriveEmulator, http: requests.Session) -> None:
    file_id = emu.id_for("targets.gsheet.csv")
    assert call(http, emu, f"files/{file_id}/export").status_code == 400
    pdf = export(emu, http, "targets.gsheet.csv", "application/pdf")
    assert pdf.status_code == 501  # real Drive renders PDF; the emulator says it does not


@pytest.mark.parametrize("path", ["sales/2024/q1.csv", "finance/budget_2024.xlsx"])
def test_binary_files_are_not_exportable(
    emu: DriveEmulator, http: requests.Session, path: str
) -> None:
    response = export(emu, http, path, "text/csv")
    assert response.status_code == 403
    detail = error_of(response)
    assert detail["reason"] == "fileNotExportable"
    assert detail["message"] == "Export only supports Docs Editors files."


def test_export_size_limit(emu: DriveEmulator, http: requests.Session) -> None:
    with DriveEmulator(emu.tree.root, export_limit_bytes=50) as small:
        response = export(small, http, "targets.gsheet.csv", "text/csv")
        assert response.status_code == 403
        detail = error_of(response)
        assert detail["reason"] == "exportSizeLimitExceeded"
        assert detail["message"] == "This file is too large to be exported."
        # the raw XLSX is bigger than 50 bytes too; a doc of ~100 bytes as well
        assert export(small, http, "README.gdoc.txt", "text/plain").status_code == 403


def test_export_links_point_at_the_emulator(emu: DriveEmulator, http: requests.Session) -> None:
    file_id = emu.id_for("targets.gsheet.csv")
    links = call(http, emu, f"files/{file_id}", fields="exportLinks").json()["exportLinks"]
    assert links["text/csv"].startswith(emu.url)
    response = http.get(links["text/csv"], params={"key": "k"}, timeout=10)
    assert response.content == (emu.tree.root / "targets.gsheet.csv").read_bytes()
