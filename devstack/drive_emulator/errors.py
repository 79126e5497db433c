"""Drive API v3 error responses, in the body shape the real service sends."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    416: "OUT_OF_RANGE",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
}


@dataclass
class ApiError(Exception):
    """An error the emulator answers with; `body()` renders the real JSON shape."""

    code: int
    reason: str
    message: str
    domain: str = "global"
    location: str | None = None
    location_type: str | None = None
    headers: dict[str, str] | None = None

    def __str__(self) -> str:
        return f"{self.code} {self.reason}: {self.message}"

    def body(self) -> dict[str, Any]:
        """The `{"error": {...}}` document for this error."""
        detail: dict[str, Any] = {
            "domain": self.domain,
            "reason": self.reason,
            "message": self.message,
        }
        if self.location is not None:
            detail["locationType"] = self.location_type or "parameter"
            detail["location"] = self.location
        error: dict[str, Any] = {"code": self.code, "message": self.message, "errors": [detail]}
        if self.code in _STATUS_NAMES:
            error["status"] = _STATUS_NAMES[self.code]
        return {"error": error}


def invalid_value(location: str, message: str = "Invalid Value") -> ApiError:
    """400 `invalid` for a bad parameter value (the real message is often just "Invalid Value")."""
    return ApiError(400, "invalid", message, location=location)


def not_found(file_id: str) -> ApiError:
    """404 `notFound` for an unknown or invisible file id."""
    return ApiError(404, "notFound", f"File not found: {file_id}.", location="fileId")


def rate_limited(reason: str = "userRateLimitExceeded") -> ApiError:
    """403 rate-limit error (domain usageLimits), retryable by clients."""
    message = (
        "User Rate Limit Exceeded" if reason == "userRateLimitExceeded" else "Rate Limit Exceeded"
    )
    return ApiError(403, reason, message, domain="usageLimits")
