"""Exception classes shared by every drivepipe module (see docs/contracts.md)."""

from __future__ import annotations

RATE_LIMIT_REASONS = frozenset({"userRateLimitExceeded", "rateLimitExceeded"})
# Reasons we assign ourselves to transport-level failures; all are transient.
TRANSIENT_REASONS = frozenset({"connectionError", "timeout", "truncated", "checksumMismatch"})


class DrivepipeError(Exception):
    """Base class of every error drivepipe raises on purpose."""


class ConfigError(DrivepipeError):
    """A pipeline configuration is missing or invalid."""


class DriveError(DrivepipeError):
    """A Drive API call failed; carries the HTTP status, the API reason and its message."""

    def __init__(self, message: str, *, status: int | None = None, reason: str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.reason = reason

    @property
    def retryable(self) -> bool:
        """True when retrying the same request later may succeed."""
        if self.reason in TRANSIENT_REASONS:
            return True
        if self.status is None:
            return False
        if self.status == 429 or self.status >= 500:
            return True
        return self.status == 403 and self.reason in RATE_LIMIT_REASONS

    def __str__(self) -> str:
        parts = [p for p in (str(self.status or ""), self.reason or "") if p]
        return f"{' '.join(parts)}: {self.message}" if parts else self.message

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(message={self.message!r}, status={self.status!r}, "
            f"reason={self.reason!r})"
        )


class DriveAuthError(DriveError):
    """Drive credentials are missing, invalid or rejected (never retried)."""


class ReadError(DrivepipeError):
    """An input file could not be parsed."""


class TransformError(DrivepipeError):
    """A transform step failed."""


class StorageError(DrivepipeError):
    """Reading or writing an output store failed."""


class ApiError(DrivepipeError):
    """An HTTP API request was rejected; ``status``, machine ``code`` and offending ``field``."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        code: str = "bad_request",
        field: str | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.field = field


class RetryableError(DrivepipeError):
    """A transient failure (destination unreachable, Drive retries exhausted): redeliver later."""


def is_transient(exc: BaseException) -> bool:
    """Worth a redelivery: the core said so, storage failed, or Drive may answer later.

    Event handlers on both clouds use this one rule: transient failures raise so the
    platform redelivers; anything else is reported and acknowledged.
    """
    if isinstance(exc, RetryableError | StorageError):
        return True
    return isinstance(exc, DriveError) and exc.retryable
