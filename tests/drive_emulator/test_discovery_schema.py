"""What the emulator serves must exist, with the same names and JSON types, in drive.v3.json."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from devstack.drive_emulator import DriveEmulator
from devstack.drive_emulator.api import GLOBAL_PARAMS, METHOD_PARAMS, POST_METHODS, SERVED_PATHS
from devstack.drive_emulator.file_fields import (
    ABOUT_FIELDS,
    CHANGE_FIELDS,
    CHANGE_LIST_FIELDS,
    FILE_FIELDS,
    FILE_LIST_FIELDS,
    START_PAGE_TOKEN_FIELDS,
)
from tests.drive_emulator.helpers import build_tree, call, list_all

googleapiclient = pytest.importorskip(
    "googleapiclient", reason="google-api-python-client ships the Drive v3 discovery document"
)
DISCOVERY = Path(googleapiclient.__file__).parent / "discovery_cache/documents/drive.v3.json"


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return json.loads(DISCOVERY.read_text())


def schema_errors(value: Any, schema: dict[str, Any], doc: dict[str, Any], path: str) -> list[str]:
    """Every place `value` does not fit `schema` (resolving $ref against the document)."""
    if "$ref" in schema:
        schema = doc["schemas"][schema["$ref"]]
    kind, fmt = schema.get("type"), schema.get("format")
    errors: list[str] = []
    if kind == "object":
        if not isinstance(value, dict):
            return [f"{path}: expected object, got {type(value).__name__}"]
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if key in props:
                errors += schema_errors(item, props[key], doc, f"{path}.{key}")
            elif extra is not None:
                errors += schema_errors(item, extra, doc, f"{path}.{key}")
            else:
                errors.append(f"{path}.{key}: not a property of the schema")
    elif kind == "array":
        if not isinstance(value, list):
            return [f"{path}: expected array"]
        for i, item in enumerate(value):
            errors += schema_errors(item, schema["items"], doc, f"{path}[{i}]")
    elif kind == "string":
        if not isinstance(value, str):
            errors.append(f"{path}: expected string, got {type(value).__name__} {value!r}")
        elif fmt == "int64" and not value.lstrip("-").isdigit():
            errors.append(f"{path}: expected an int64 string, got {value!r}")
        elif fmt == "date-time":
            try:
                datetime.fromisoformat(value)
            except ValueError:
                errors.append(f"{path}: not RFC 3339: {value!r}")
    elif kind == "boolean" and not isinstance(value, bool):
        errors.append(f"{path}: expected boolean, got {value!r}")
    elif kind == "integer" and (isinstance(value, bool) or not isinstance(value, int)):
        errors.append(f"{path}: expected integer, got {value!r}")
    return errors


def method_doc(doc: dict[str, Any], method_id: str) -> dict[str, Any]:
    """The discovery entry of a method id such as drive.changes.list."""
    _, resource, method = method_id.split(".")
    documented = doc["resources"][resource]["methods"][method]
    assert documented["id"] == method_id
    return documented


def test_every_served_path_is_the_documented_one(doc: dict[str, Any], emu: DriveEmulator) -> None:
    assert emu.url.endswith("/" + doc["servicePath"].rstrip("/"))
    assert set(SERVED_PATHS) == set(METHOD_PARAMS)
    for method_id, path in SERVED_PATHS.items():
        documented = method_doc(doc, method_id)
        assert documented["path"] == path
        assert documented["httpMethod"] == ("POST" if method_id in POST_METHODS else "GET")


def test_every_accepted_parameter_exists_with_its_type(doc: dict[str, Any]) -> None:
    for name, kind in GLOBAL_PARAMS.items():
        assert doc["parameters"][name]["type"] == kind, name
    for method_id, params in METHOD_PARAMS.items():
        documented = method_doc(doc, method_id).get("parameters", {})
        for name, kind in params.items():
            assert name in documented, f"{method_id} has no parameter {name}"
            assert documented[name]["type"] == kind, f"{method_id}.{name}"
        # every documented, non-deprecated query parameter the emulator ignores is listed
        ignored = {
            n
            for n, p in documented.items()
            if n not in params and not p.get("deprecated") and p["location"] == "query"
        }
        assert ignored <= IGNORED_PARAMS.get(method_id, set()), (method_id, ignored)


# Documented parameters the emulator accepts and ignores (not sent by drivepipe).
IGNORED_PARAMS = {
    "drive.files.list": {"includeLabels", "includePermissionsForView"},
    "drive.files.get": {"includeLabels", "includePermissionsForView"},
    "drive.changes.list": {"includeCorpusRemovals", "includeLabels", "includePermissionsForView"},
    "drive.changes.watch": {"includeCorpusRemovals", "includeLabels", "includePermissionsForView"},
}


def test_changes_defaults_and_required_parameters(doc: dict[str, Any]) -> None:
    listing = method_doc(doc, "drive.changes.list")
    assert listing["parameterOrder"] == ["pageToken"]
    assert listing["parameters"]["pageToken"]["required"] is True
    # the emulator's defaults (changes.py) are the documented ones
    assert listing["parameters"]["includeRemoved"]["default"] == "true"
    assert listing["parameters"]["pageSize"]["default"] == "100"
    assert listing["parameters"]["pageSize"]["maximum"] == "1000"
    assert listing["parameters"]["spaces"]["default"] == "drive"
    assert listing["response"] == {"$ref": "ChangeList"}
    assert method_doc(doc, "drive.changes.getStartPageToken")["response"] == {
        "$ref": "StartPageToken"
    }
    assert method_doc(doc, "drive.about.get")["response"] == {"$ref": "About"}


@pytest.mark.parametrize(
    ("schema", "table"),
    [("File", FILE_FIELDS), ("Change", CHANGE_FIELDS), ("About", ABOUT_FIELDS)],
)
def test_field_snapshot_matches_the_document(
    doc: dict[str, Any], schema: str, table: dict[str, tuple[str, ...] | None]
) -> None:
    props = doc["schemas"][schema]["properties"]
    assert set(table) == set(props)
    for name, sub in table.items():
        if sub is not None:
            prop = props[name]
            prop = prop.get("items", prop) if prop.get("type") == "array" else prop
            target = doc["schemas"][prop["$ref"]] if "$ref" in prop else prop
            assert set(sub) <= set(target.get("properties", {})), name


def test_list_field_snapshots_match_the_document(doc: dict[str, Any]) -> None:
    assert set(FILE_LIST_FIELDS) == set(doc["schemas"]["FileList"]["properties"])
    assert set(CHANGE_LIST_FIELDS) == set(doc["schemas"]["ChangeList"]["properties"])
    assert set(START_PAGE_TOKEN_FIELDS) == set(doc["schemas"]["StartPageToken"]["properties"])


@pytest.mark.parametrize("drive_id", [None, "0AExampleSharedDrive9PVA"])
def test_list_and_get_responses_fit_the_schemas(
    doc: dict[str, Any], tree_root: Path, http: requests.Session, drive_id: str | None
) -> None:
    flags = (
        {"supportsAllDrives": "true", "includeItemsFromAllDrives": "true", "corpora": "drive"}
        if drive_id
        else {}
    )
    if drive_id:
        flags["driveId"] = drive_id
    with DriveEmulator(tree_root, drive_id=drive_id) as emulator:
        files, _ = list_all(http, emulator, fields="*", pageSize=7, **flags)
        kinds = {f["mimeType"] for f in files}
        # every kind of entry is covered: folder, binary, native sheet/doc, shortcut
        assert {
            "application/vnd.google-apps.folder",
            "application/vnd.google-apps.spreadsheet",
            "application/vnd.google-apps.document",
            "application/vnd.google-apps.shortcut",
            "text/csv",
        } <= kinds
        assert any(f["trashed"] for f in files)
        first_page = call(http, emulator, "files", fields="*", pageSize=3, **flags).json()
        assert "nextPageToken" in first_page
        assert schema_errors(first_page, {"$ref": "FileList"}, doc, "FileList") == []
        for item in [*files, {"id": emulator.root_id}]:
            get_flags = {"supportsAllDrives": "true"} if drive_id else {}
            body = call(http, emulator, f"files/{item['id']}", fields="*", **get_flags).json()
            assert schema_errors(body, {"$ref": "File"}, doc, item["id"]) == []
            if body["mimeType"] == "text/csv":
                assert body["size"].isdigit() and len(body["md5Checksum"]) == 32
            if body["mimeType"].startswith("application/vnd.google-apps."):
                assert "size" not in body and "md5Checksum" not in body


@pytest.mark.parametrize("drive_id", [None, "0AExampleSharedDrive9PVA"])
def test_changes_and_about_responses_fit_the_schemas(
    doc: dict[str, Any], tmp_path: Path, http: requests.Session, drive_id: str | None
) -> None:
    root = build_tree(tmp_path / "root")
    flags: dict[str, str] = {}
    if drive_id:
        flags = {"driveId": drive_id, "supportsAllDrives": "true"}
    with DriveEmulator(root, drive_id=drive_id) as emulator:
        start = call(http, emulator, "changes/startPageToken", **flags).json()
        assert schema_errors(start, {"$ref": "StartPageToken"}, doc, "StartPageToken") == []
        assert start["kind"] == "drive#startPageToken"
        (root / "sales/2024/q1.csv").unlink()  # removed
        (root / "added.csv").write_bytes(b"a\n1\n")  # added
        os.rename(root / "wide.gsheet.xlsx", root / "sales/wide.gsheet.xlsx")  # moved
        if drive_id:
            flags["includeItemsFromAllDrives"] = "true"
        listing = call(
            http, emulator, "changes", pageToken=start["startPageToken"], fields="*", **flags
        ).json()
        assert schema_errors(listing, {"$ref": "ChangeList"}, doc, "ChangeList") == []
        assert {c["removed"] for c in listing["changes"]} == {True, False}
        assert "newStartPageToken" in listing
        first = call(
            http, emulator, "changes", pageToken=start["startPageToken"], pageSize=1, **flags
        ).json()
        assert schema_errors(first, {"$ref": "ChangeList"}, doc, "ChangeList") == []
        assert "nextPageToken" in first and "newStartPageToken" not in first
        about = call(http, emulator, "about", fields="*").json()
        assert schema_errors(about, {"$ref": "About"}, doc, "About") == []
        assert about["kind"] == "drive#about" and about["user"]["me"] is True


def test_schema_walker_catches_wrong_types(doc: dict[str, Any]) -> None:
    bad = {"id": "x", "size": 12, "trashed": "no", "parents": "p", "bogus": 1}
    errors = schema_errors(bad, {"$ref": "File"}, doc, "File")
    assert len(errors) == 4, errors
