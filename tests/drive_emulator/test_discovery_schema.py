"""What the emulator serves must exist, with the same names and JSON types, in drive.v3.json."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from devstack.drive_emulator import DriveEmulator
from devstack.drive_emulator.api import GLOBAL_PARAMS, METHOD_PARAMS, SERVED_PATHS
from devstack.drive_emulator.file_fields import FILE_FIELDS, FILE_LIST_FIELDS
from tests.drive_emulator.helpers import call, list_all

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


def test_every_served_path_is_the_documented_one(doc: dict[str, Any], emu: DriveEmulator) -> None:
    assert emu.url.endswith("/" + doc["servicePath"].rstrip("/"))
    methods = doc["resources"]["files"]["methods"]
    for method_id, path in SERVED_PATHS.items():
        documented = methods[method_id.rsplit(".", 1)[1]]
        assert documented["id"] == method_id
        assert documented["path"] == path
        assert documented["httpMethod"] == "GET"


def test_every_accepted_parameter_exists_with_its_type(doc: dict[str, Any]) -> None:
    methods = doc["resources"]["files"]["methods"]
    for name, kind in GLOBAL_PARAMS.items():
        assert doc["parameters"][name]["type"] == kind, name
    for method_id, params in METHOD_PARAMS.items():
        documented = methods[method_id.rsplit(".", 1)[1]]["parameters"]
        for name, kind in params.items():
            assert name in documented, f"{method_id} has no parameter {name}"
            assert documented[name]["type"] == kind, f"{method_id}.{name}"


def test_field_snapshot_matches_the_document(doc: dict[str, Any]) -> None:
    file_props = doc["schemas"]["File"]["properties"]
    assert set(FILE_FIELDS) == set(file_props)
    assert set(FILE_LIST_FIELDS) == set(doc["schemas"]["FileList"]["properties"])
    for name, sub in FILE_FIELDS.items():
        if sub is not None:
            prop = file_props[name]
            prop = prop.get("items", prop) if prop.get("type") == "array" else prop
            target = doc["schemas"][prop["$ref"]] if "$ref" in prop else prop
            assert set(sub) <= set(target.get("properties", {})), name


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


def test_schema_walker_catches_wrong_types(doc: dict[str, Any]) -> None:
    bad = {"id": "x", "size": 12, "trashed": "no", "parents": "p", "bogus": 1}
    errors = schema_errors(bad, {"$ref": "File"}, doc, "File")
    assert len(errors) == 4, errors
