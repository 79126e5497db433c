"""The HTTP contract both clouds serve: request bodies, their validation, and responses.

Both the Chalice route and the Cloud Functions HTTP entry point hand raw bytes to
:func:`parse_sync_body` (through :mod:`shared.triggers.service`), so validation and error bodies
are identical on AWS and GCP.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from shared.errors import ApiError

MAX_BODY_BYTES = 64 * 1024


class SyncBody(BaseModel):
    """``POST /sync`` body: a pipeline name plus the overrides the pipeline allows."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pipeline: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")
    folder_id: str | None = Field(
        default=None, min_length=1, max_length=256, pattern=r"^[A-Za-z0-9_-]+$"
    )
    since: datetime | None = None
    full_refresh: StrictBool = False
    dry_run: StrictBool = False
    force_removals: StrictBool = False  # past the mirror's removal guard; must be allowed

    def overrides(self) -> dict[str, Any]:
        """The override fields the caller actually set."""
        return {
            name: getattr(self, name) for name in OVERRIDE_FIELDS if name in self.model_fields_set
        }


# Every field but the pipeline's name is an override; shared.config's Override type reads this.
OVERRIDE_FIELDS: tuple[str, ...] = tuple(
    name for name in SyncBody.model_fields if name != "pipeline"
)


@dataclass(frozen=True)
class Response:
    """A status code and a JSON-able body, shaped by each handler for its cloud."""

    status: int
    body: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})


def error_response(error: ApiError) -> Response:
    """The JSON error body every 4xx/5xx carries."""
    body: dict[str, Any] = {"error": {"code": error.code, "message": error.message}}
    if error.field:
        body["error"]["field"] = error.field
    return Response(status=error.status, body=body)


def parse_json_object(
    raw: bytes | str | None, *, max_bytes: int = MAX_BODY_BYTES
) -> dict[str, Any]:
    """Decode a JSON object body, or raise :class:`ApiError` (413 too large, 400 otherwise)."""
    if raw is None or raw == b"" or raw == "":
        raise ApiError(
            "request body is empty; expected a JSON object", status=400, code="empty_body"
        )
    data = raw.encode("utf-8") if isinstance(raw, str) else raw
    if len(data) > max_bytes:
        raise ApiError(f"request body exceeds {max_bytes} bytes", status=413, code="body_too_large")
    try:
        parsed = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(
            f"request body is not valid JSON: {exc}", status=400, code="invalid_json"
        ) from exc
    if not isinstance(parsed, dict):
        raise ApiError("request body must be a JSON object", status=400, code="invalid_body")
    return parsed


def parse_sync_body(raw: bytes | str | None, *, max_bytes: int = MAX_BODY_BYTES) -> SyncBody:
    """Decode and validate a ``POST /sync`` body; errors name the offending field."""
    return validate_sync_body(parse_json_object(raw, max_bytes=max_bytes))


def validate_sync_body(parsed: Mapping[str, Any]) -> SyncBody:
    """Validate an already-decoded sync body (a request file's JSON object)."""
    try:
        return SyncBody.model_validate(parsed)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        message = "unknown field" if first["type"] == "extra_forbidden" else first["msg"]
        raise ApiError(
            f"{where}: {message}", status=400, code="invalid_field", field=where
        ) from exc
