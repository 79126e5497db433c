"""The HTTP API through chalice.test.Client, against moto_server and the Drive emulator."""

from __future__ import annotations

import json

import pytest
from chalice.test import Client

from tests.aws.conftest import Stack

JSON = {"Content-Type": "application/json"}
pytestmark = pytest.mark.filterwarnings("ignore:IAMAuthorizer is not a supported")


def post_sync(client: Client, body: bytes | str) -> tuple[int, dict]:
    raw = body.encode() if isinstance(body, str) else body
    response = client.http.post("/sync", headers=JSON, body=raw)
    return response.status_code, json.loads(response.body or b"{}")


def test_health_lists_the_shipped_pipelines(client: Client) -> None:
    response = client.http.get("/health")
    assert response.status_code == 200
    assert response.json_body == {"status": "ok", "pipelines": ["sales"]}


def test_sync_writes_outputs_and_its_run_can_be_fetched(client: Client, stack: Stack) -> None:
    status, body = post_sync(client, json.dumps({"pipeline": "sales"}))
    assert status == 200, body
    assert stack.data_outputs() == ["sales/sales/q1.parquet"]
    run_id = body["run_id"]

    run = client.http.get(f"/runs/{run_id}")
    assert run.status_code == 200
    assert run.json_body["run_id"] == run_id
    assert run.headers["Content-Type"] == "application/json"


def test_dry_run_override_writes_nothing(client: Client, stack: Stack) -> None:
    status, body = post_sync(client, json.dumps({"pipeline": "sales", "dry_run": True}))
    assert status == 200, body
    assert stack.data_outputs() == []


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ('{"pipeline": "sales",', 400, None),  # invalid JSON
        ('["sales"]', 400, None),  # not an object
        ('{"pipeline": "sales", "full_refresh": "yes"}', 400, "full_refresh"),  # wrong type
        ('{"pipeline": 7}', 400, "pipeline"),  # wrong type
        ('{"pipeline": "sales", "colour": "red"}', 400, "colour"),  # unknown field
        ('{"pipeline": "nope"}', 404, "pipeline"),  # unknown pipeline
        ("{}", 400, "pipeline"),  # missing field
    ],
)
def test_sync_rejects_bad_bodies_without_side_effects(
    client: Client, stack: Stack, body: str, status: int, field: str | None
) -> None:
    got_status, got = post_sync(client, body)
    assert got_status == status, got
    assert "message" in got["error"]
    assert got["error"].get("field") == field
    assert stack.output_keys() == []


def test_sync_rejects_an_oversized_body_with_413(client: Client, stack: Stack) -> None:
    padding = "x" * (70 * 1024)
    status, body = post_sync(client, json.dumps({"pipeline": "sales", "pad": padding}))
    assert status == 413, body
    assert stack.output_keys() == []


def test_sync_with_an_empty_body_is_a_400(client: Client) -> None:
    status, body = post_sync(client, b"")
    assert status == 400, body


def test_unknown_and_malformed_run_ids(client: Client) -> None:
    unknown = client.http.get("/runs/20240101T000000Z-deadbeef")
    assert unknown.status_code == 404, unknown.body
    assert unknown.json_body["error"]["code"] == "unknown_run"
    malformed = client.http.get("/runs/not-a-run-id")
    assert malformed.status_code == 400, malformed.body
    assert malformed.json_body["error"]["field"] == "run_id"


def test_chalice_s_own_errors_take_our_error_shape(client: Client) -> None:
    """415 (a content type the route does not take) and 405 come from Chalice itself, before
    the view; the middleware gives them the same ``{"error": {...}}`` body as ours."""
    wrong_type = client.http.post("/sync", headers={"Content-Type": "text/plain"}, body=b"x")
    assert wrong_type.status_code == 415
    assert json.loads(wrong_type.body) == {
        "error": {"code": "unsupported_media_type", "message": "Unsupported media type: text/plain"}
    }
    wrong_method = client.http.put("/sync", headers=JSON, body=b"{}")
    assert wrong_method.status_code == 405
    assert json.loads(wrong_method.body)["error"]["code"] == "method_not_allowed"
