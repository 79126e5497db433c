"""The shared HTTP body contract."""

from __future__ import annotations

import json

import pytest

from shared.config import OVERRIDABLE
from shared.errors import ApiError
from shared.triggers.http import (
    MAX_BODY_BYTES,
    OVERRIDE_FIELDS,
    SyncBody,
    error_response,
    parse_sync_body,
    validate_sync_body,
)


def test_valid_body_keeps_only_the_overrides_that_were_set() -> None:
    body = parse_sync_body(json.dumps({"pipeline": "sales", "dry_run": True}))
    assert body.pipeline == "sales"
    assert body.overrides() == {"dry_run": True}


@pytest.mark.parametrize(
    ("raw", "status", "code", "field"),
    [
        (None, 400, "empty_body", None),
        (b"{not json", 400, "invalid_json", None),
        (b"[1, 2]", 400, "invalid_body", None),
        (json.dumps({}), 400, "invalid_field", "pipeline"),
        (json.dumps({"pipeline": 3}), 400, "invalid_field", "pipeline"),
        (json.dumps({"pipeline": "a", "dry_run": "yes"}), 400, "invalid_field", "dry_run"),
        (json.dumps({"pipeline": "a", "since": "yesterday"}), 400, "invalid_field", "since"),
        (json.dumps({"pipeline": "a", "colour": "red"}), 400, "invalid_field", "colour"),
        (json.dumps({"pipeline": "a", "folder_id": "../x"}), 400, "invalid_field", "folder_id"),
        (b"{" + b" " * MAX_BODY_BYTES + b"}", 413, "body_too_large", None),
    ],
)
def test_bad_bodies(raw: bytes | str | None, status: int, code: str, field: str | None) -> None:
    with pytest.raises(ApiError) as info:
        parse_sync_body(raw)
    assert (info.value.status, info.value.code, info.value.field) == (status, code, field)
    response = error_response(info.value)
    assert response.status == status
    assert response.body["error"]["code"] == code
    assert response.body["error"].get("field") == field


@pytest.mark.parametrize(
    "body",
    [{"pipeline": "a", "dry_run": True}, {"pipeline": "a", "colour": "red"}, {"pipeline": 3}],
)
def test_a_decoded_body_validates_as_its_json_text_does(body: dict[str, object]) -> None:
    """Request files arrive decoded: validated as they are, never dumped to JSON and back."""
    try:
        expected: object = parse_sync_body(json.dumps(body))
    except ApiError as exc:
        with pytest.raises(ApiError) as info:
            validate_sync_body(body)
        assert (info.value.code, info.value.field) == (exc.code, exc.field)
    else:
        assert validate_sync_body(body) == expected


def test_the_override_fields_are_the_sync_body_fields() -> None:
    assert ("pipeline", *OVERRIDE_FIELDS) == tuple(SyncBody.model_fields)
    assert OVERRIDABLE == OVERRIDE_FIELDS


def test_force_removals_is_an_override_the_pipeline_must_allow() -> None:
    from shared.config import DEFAULT_OVERRIDES

    body = validate_sync_body({"pipeline": "sales", "force_removals": True})
    assert body.overrides() == {"force_removals": True}
    assert "force_removals" in OVERRIDE_FIELDS and "force_removals" not in DEFAULT_OVERRIDES
    with pytest.raises(ApiError) as refused:
        validate_sync_body({"pipeline": "sales", "force_removals": "yes"})
    assert refused.value.field == "force_removals"
