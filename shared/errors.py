"""Every exception drivepipe raises on purpose, in one tree (see docs/contracts.md)::

    DrivepipeError
    ├── ConfigError            a pipeline file or setting is missing or invalid (names the field)
    │   └── StageConfigError   a stage's environment lacks a trigger setting (fails the cold start)
    │       └── InsecureConfigError   it would serve the HTTP API without auth, unasked
    ├── DriveError             a Drive API call failed (status, reason, message; .retryable)
    │   ├── DriveAuthError     credentials missing, invalid or refused (never retried)
    │   └── ChangesTokenInvalid  Drive refused a changes page token: walk the tree instead
    ├── ReadError              an input file could not be parsed
    ├── TransformError         a transform step failed
    ├── StorageError           reading or writing a store failed (transient)
    │   ├── StorageNotFound    no object at that key (the bucket or root exists)
    │   └── StorageUnavailable the store did not answer (outage, retries exhausted): 503 / retry
    ├── ApiError               an HTTP request was rejected (status, code, field)
    ├── EventError             a cloud event without the shape its cloud sends
    ├── BadWorkItem            a queue message that is not a work item (dropped, never retried)
    ├── LeaseHeld              someone else holds a live lease (who, which run, until when)
    ├── LeaseLost              our lease expired and was taken over: stop without saving
    ├── OutOfTime              an input would outlast the function's remaining time
    └── RetryableError         transient: redeliver later
        ├── EventInProgress    another delivery is processing this event
        └── ItemCrashed        a worker could not finish an item: the queue redelivers it

:func:`is_transient` is the one rule for "raise so the platform redelivers" versus "report and
acknowledge".
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.run.lease import LeaseInfo

RATE_LIMIT_REASONS = frozenset({"userRateLimitExceeded", "rateLimitExceeded"})
# Reasons we assign ourselves to transport-level failures; all are transient.
TRANSIENT_REASONS = frozenset({"connectionError", "timeout", "truncated", "checksumMismatch"})


class DrivepipeError(Exception):
    """Base class of every error drivepipe raises on purpose."""


class ConfigError(DrivepipeError):
    """A pipeline configuration is missing or invalid."""


class StageConfigError(ConfigError, RuntimeError):
    """A stage's environment lacks a trigger setting; raised at import, so the cold start fails."""


class InsecureConfigError(StageConfigError):
    """The stage would expose the HTTP API without authentication by accident."""


class DriveError(DrivepipeError):
    """A Drive API call failed; carries the HTTP status, the API reason and its message.

    ``location`` is the parameter the API blamed (``errors[0].location``), when it named one.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        reason: str | None = None,
        location: str | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.status = status
        self.reason = reason
        self.location = location

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


class ChangesTokenInvalid(DriveError):
    """Drive refused a changes page token (unknown, expired, or from another drive).

    Never retried: the caller starts again from a full walk and a new start page token.
    """


class ReadError(DrivepipeError):
    """An input file could not be parsed."""


class TransformError(DrivepipeError):
    """A transform step failed."""


class ContractError(TransformError):
    """An input's columns break its table's schema contract (freeze, a declared type, a type
    no rule widens): the input fails and is quarantined; the message names columns and types."""


class CatalogError(DrivepipeError):
    """Registering a table in Glue or BigQuery failed (recorded in the manifest, retried)."""


class StorageError(DrivepipeError):
    """Reading or writing an output store failed."""


class StorageNotFound(StorageError):
    """The object does not exist at the key (the bucket/root itself does)."""


class StorageUnavailable(StorageError):
    """The store did not answer: connection refused or reset, timeouts, 5xx/429 after the
    client's bounded retries. HTTP answers 503 with ``Retry-After``; events are redelivered."""


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


class EventError(DrivepipeError, ValueError):
    """An event that does not have the shape its cloud sends."""


class BadWorkItem(DrivepipeError, ValueError):
    """A queue message that is not a work item: it can never succeed, so it is dropped."""


class LeaseHeld(DrivepipeError):
    """Someone else holds a live lease: who, for which run, and until when."""

    def __init__(self, name: str, holder: LeaseInfo) -> None:
        self.name = name
        self.holder = holder
        until = datetime.fromtimestamp(holder.expires_at, UTC).isoformat(timespec="seconds")
        what = f"run {holder.run_id}" if holder.run_id else f"holder {holder.holder}"
        super().__init__(f"{name} is held by {what} until {until.replace('+00:00', 'Z')}")


class LeaseLost(DrivepipeError):
    """Our lease expired and another holder took it over; stop without saving shared state."""


class OutOfTime(DrivepipeError):
    """An input would outlast the invocation: the function's time, less the reserve kept to
    finish the run, is spent (see :mod:`shared.deadline`).

    ``first`` is true when the input was the first this invocation processed: it had the whole
    of the function's time, so another invocation would not do better.
    """

    def __init__(self, remaining: float, budget: float, reserve: float, *, first: bool) -> None:
        self.remaining, self.budget, self.reserve, self.first = remaining, budget, reserve, first
        super().__init__(
            f"would exceed the function's remaining time: {max(remaining, 0.0):.1f} s left, "
            f"budget {budget:.1f} s ({reserve:.1f} s are kept to finish the run)"
        )


class RetryableError(DrivepipeError):
    """A transient failure (destination unreachable, Drive retries exhausted): redeliver later."""


class EventInProgress(RetryableError):
    """Another delivery holds a live claim on this event and did not finish within the wait."""


class ItemCrashed(RetryableError):
    """The worker could not finish a work item; the queue should deliver it again."""


class SecretStoreError(RetryableError):
    """A channel token could not be kept in or read from the secret store (never its value)."""


def is_transient(exc: BaseException) -> bool:
    """Worth a redelivery: the core said so, storage failed, or Drive may answer later.

    Event handlers on both clouds use this one rule: transient failures raise so the
    platform redelivers; anything else is reported and acknowledged.
    """
    if isinstance(exc, RetryableError | StorageError):
        return True
    return isinstance(exc, DriveError) and exc.retryable
