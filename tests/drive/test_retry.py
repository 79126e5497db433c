"""Unit tests of the backoff schedule, error parsing and DriveError.retryable."""

from __future__ import annotations

import random

import pytest
import requests

from shared.drive.retry import RetryPolicy, error_from_response, retry_label
from shared.errors import DriveAuthError, DriveError


def test_backoff_ceiling_doubles_then_truncates_at_cap() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=32.0)
    assert [policy.ceiling(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 32, 32]


def test_full_jitter_stays_within_the_ceiling_and_varies() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=3.0)
    rng = random.Random(7)
    for n in range(1, 8):
        delays = [policy.delay(n, rng=rng) for _ in range(200)]
        assert all(0.0 <= d <= policy.ceiling(n) for d in delays)
        assert max(delays) > 0.7 * policy.ceiling(n)  # spread over the whole window
        assert len(set(delays)) > 150


def test_retry_after_is_honoured_up_to_the_cap() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=10.0)
    rng = random.Random(0)
    assert policy.delay(1, retry_after=4.0, rng=rng) == 4.0
    assert policy.delay(1, retry_after=120.0, rng=rng) == 10.0


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(base_delay=-1)


def _response(
    status: int, body: bytes, content_type: str = "application/json"
) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = body
    response.headers["Content-Type"] = content_type
    response.reason = "Reason"
    return response


def test_error_parsing_keeps_reason_and_api_message() -> None:
    body = (
        b'{"error": {"code": 403, "message": "User rate limit exceeded.", "errors": '
        b'[{"domain": "usageLimits", "reason": "userRateLimitExceeded", "message": "x"}]}}'
    )
    error = error_from_response(_response(403, body))
    assert (error.status, error.reason, error.message) == (
        403,
        "userRateLimitExceeded",
        "User rate limit exceeded.",
    )
    assert error.retryable
    assert retry_label(error) == "rate_limit_403"


def test_error_parsing_of_other_403_404_and_plain_text() -> None:
    forbidden = error_from_response(
        _response(
            403, b'{"error": {"code": 403, "message": "No", "errors": [{"reason": "forbidden"}]}}'
        )
    )
    assert not forbidden.retryable and forbidden.reason == "forbidden"
    missing = error_from_response(
        _response(404, b'{"error": {"code": 404, "message": "File not found: x."}}')
    )
    assert missing.message == "File not found: x." and not missing.retryable
    html = error_from_response(_response(502, b"<html>Bad Gateway</html>", "text/html"))
    assert html.status == 502 and "Bad Gateway" in html.message and html.retryable


def test_export_limit_error_names_the_10_mb_limit_and_is_final() -> None:
    body = (
        b'{"error": {"code": 403, "message": "This file is too large to be exported.", '
        b'"errors": [{"reason": "exportSizeLimitExceeded"}]}}'
    )
    error = error_from_response(_response(403, body))
    assert "10 MB" in str(error) and not error.retryable


def test_401_becomes_auth_error_naming_the_variables() -> None:
    error = error_from_response(
        _response(401, b'{"error": {"code": 401, "message": "Invalid Credentials"}}')
    )
    assert isinstance(error, DriveAuthError)
    assert "Invalid Credentials" in str(error) and "DRIVE_API_KEY" in str(error)


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (DriveError("m", status=429), True),
        (DriveError("m", status=500), True),
        (DriveError("m", status=403, reason="rateLimitExceeded"), True),
        (DriveError("m", status=403, reason="insufficientFilePermissions"), False),
        (DriveError("m", status=400, reason="invalid"), False),
        (DriveError("m", reason="truncated"), True),
        (DriveError("m", reason="checksumMismatch"), True),
        (DriveError("m", reason="notDownloadable"), False),
    ],
)
def test_retryable_classification(error: DriveError, retryable: bool) -> None:
    assert error.retryable is retryable
