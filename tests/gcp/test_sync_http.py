"""sync_http served by functions-framework: routes, validation and error bodies over real HTTP."""

from __future__ import annotations

import json

import pytest
import requests

from devstack.gcp_dev import GcpDevStack
from shared.triggers.http import MAX_BODY_BYTES


def call(stack: GcpDevStack, method: str, path: str, body: bytes | str | None = None):
    return requests.request(
        method,
        stack.url("sync_http") + path,
        data=body,
        timeout=60,
        headers={"Content-Type": "application/json"},
    )


@pytest.mark.parametrize("path", ["/health", "/"])
def test_health_lists_the_configured_pipelines(gcp_stack: GcpDevStack, path: str):
    response = call(gcp_stack, "GET", path)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {"status": "ok", "pipelines": ["products", "sales"]}


def test_sync_runs_and_its_manifest_can_be_fetched(gcp_stack: GcpDevStack):
    response = call(
        gcp_stack, "POST", "/sync", json.dumps({"pipeline": "sales", "full_refresh": True})
    )
    assert response.status_code == 200, response.text
    summary = response.json()
    assert summary["pipeline"] == "sales"
    assert summary["trigger"] == "http"
    assert summary["counts"]["written"] == 2
    assert summary["rows_out"] == 3  # 2 + 1 rows with units > 0 in the two Drive CSVs

    run = call(gcp_stack, "GET", f"/runs/{summary['run_id']}")
    assert run.status_code == 200
    manifest = run.json()
    assert manifest["run_id"] == summary["run_id"]
    assert sorted(i["path"] for i in manifest["inputs"]) == [
        "sales/2024/q1.csv",
        "sales/2025/q1.csv",
    ]


def test_dry_run_writes_nothing(gcp_stack: GcpDevStack):
    before = {b.name for b in gcp_stack.client.list_blobs(gcp_stack.output_bucket)}
    response = call(gcp_stack, "POST", "/sync", '{"pipeline": "products", "dry_run": true}')
    assert response.status_code == 200, response.text
    assert response.json()["dry_run"] is True
    after = {b.name for b in gcp_stack.client.list_blobs(gcp_stack.output_bucket)}
    assert after == before


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ("{not json", 400, "invalid_json", None),
        ("", 400, "empty_body", None),
        ("[1, 2]", 400, "invalid_body", None),
        ('{"pipeline": 5}', 400, "invalid_field", "pipeline"),
        ('{"pipeline": "sales", "dry_run": "yes"}', 400, "invalid_field", "dry_run"),
        ('{"pipeline": "sales", "colour": "red"}', 400, "invalid_field", "colour"),
        ('{"pipeline": "products", "folder_id": "abc"}', 400, "override_not_allowed", "folder_id"),
        ('{"pipeline": "nope"}', 404, "unknown_pipeline", "pipeline"),
    ],
)
def test_bad_sync_bodies_get_a_clear_error(
    gcp_stack: GcpDevStack, body: str, status: int, code: str, field: str | None
):
    response = call(gcp_stack, "POST", "/sync", body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error.get("field") == field
    assert error["message"]


def test_oversized_body_is_413(gcp_stack: GcpDevStack):
    body = json.dumps({"pipeline": "sales", "pad": "x" * MAX_BODY_BYTES})
    response = call(gcp_stack, "POST", "/sync", body)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/sync", "POST"),
        ("PUT", "/sync", "POST"),
        ("DELETE", "/health", "GET, HEAD"),
        ("POST", "/runs/20240101T000000Z-abcdef12", "GET, HEAD"),
    ],
)
def test_wrong_method_is_405_with_allow(gcp_stack: GcpDevStack, method: str, path: str, allow: str):
    response = call(gcp_stack, method, path)
    assert response.status_code == 405
    assert response.headers["Allow"] == allow
    assert response.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/runs/20240101T000000Z-abcdef12", 404, "unknown_run"),
        ("/runs/not-a-run-id!", 400, "invalid_field"),
        ("/runs/..%2F..%2Fetc", 404, "not_found"),  # %2F is decoded: never reaches storage
        ("/nowhere", 404, "not_found"),
        ("/runs/a/b", 404, "not_found"),
    ],
)
def test_unknown_runs_and_routes(gcp_stack: GcpDevStack, path: str, status: int, code: str):
    response = call(gcp_stack, "GET", path)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
