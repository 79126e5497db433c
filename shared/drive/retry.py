"""Retry policy (truncated exponential backoff, full jitter) and Drive error parsing."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import requests

from shared.drive.auth import CREDENTIAL_HELP, mask_secrets
from shared.errors import RATE_LIMIT_REASONS, DriveAuthError, DriveError

EXPORT_LIMIT_HELP = (
    "Drive refuses to export native files larger than 10 MB (exportSizeLimitExceeded); "
    "split the sheet or download it via its exportLinks"
)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry: ``max_attempts`` tries, delays in [0, base·2ⁿ] ≤ cap."""

    max_attempts: int = 6
    base_delay: float = 1.0
    max_delay: float = 32.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("retry delays must not be negative")

    def ceiling(self, retry_number: int) -> float:
        """Upper bound of the delay before retry ``retry_number`` (1 for the first retry)."""
        return min(self.max_delay, self.base_delay * 2 ** (retry_number - 1))

    def delay(
        self, retry_number: int, *, retry_after: float | None = None, rng: random.Random
    ) -> float:
        """Seconds to wait before retry ``retry_number``; ``Retry-After`` wins, up to the cap."""
        if retry_after is not None:
            return min(self.max_delay, max(0.0, retry_after))
        return rng.uniform(0.0, self.ceiling(retry_number))


def retry_after_seconds(response: requests.Response) -> float | None:
    """The ``Retry-After`` header in seconds, or None if absent or not a number."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None  # an HTTP-date; fall back to our own backoff


def error_from_response(response: requests.Response) -> DriveError:
    """Build the DriveError for a failed response, keeping the API's own reason and message."""
    status = response.status_code
    reason: str | None = None
    location: str | None = None
    message = ""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        message = str(err.get("message") or "")
        details = err.get("errors")
        if isinstance(details, list) and details and isinstance(details[0], dict):
            reason = details[0].get("reason")
            location = details[0].get("location")
            message = message or str(details[0].get("message") or "")
        reason = reason or err.get("status")
    if not message:
        message = (response.text or response.reason or "no error body")[:300].strip()
    message = mask_secrets(message)
    if reason == "exportSizeLimitExceeded":
        message = f"{message} — {EXPORT_LIMIT_HELP}"
    # 401 is a bad token; Google answers a bad API key with 400 keyInvalid ("API key not valid").
    if status == 401 or reason in ("keyInvalid", "keyExpired"):
        return DriveAuthError(
            f"Drive rejected the credentials: {message}; {CREDENTIAL_HELP}",
            status=status,
            reason=reason,
        )
    return DriveError(message, status=status, reason=reason, location=location)


def retry_label(error: DriveError) -> str:
    """Short counter key for a retried error (e.g. ``429``, ``rate_limit_403``, ``truncated``)."""
    if error.status == 403 and error.reason in RATE_LIMIT_REASONS:
        return "rate_limit_403"
    if error.status is not None:
        return str(error.status)
    return error.reason or "unknown"
