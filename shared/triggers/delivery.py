"""The one redelivery policy every event handler follows, on AWS and on GCP.

An event's work either succeeds or fails, and :func:`shared.errors.is_transient` settles a
failure:

- transient: raise, so the platform delivers the event again (Lambda's retries, Eventarc's
  ``--retry``, SQS and Pub/Sub redelivery);
- permanent (a bad event, a bad file, a bad request file): report it and acknowledge the
  delivery, so nothing loops forever.

:func:`attempt` runs the work and returns a :class:`Failure` instead of raising; the caller
reports it in its cloud's shape and calls :meth:`Failure.raise_if_transient` when it is done
(after the other records of a batch, for S3 notifications). :func:`log_failure` is the shape
Cloud Logging and Error Reporting want.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from shared.errors import BadWorkItem, DrivepipeError, EventError, is_transient

# Makes an ERROR line without a stack trace show up in GCP's Error Reporting too.
REPORTED_ERROR = (
    "type.googleapis.com/google.devtools.clouderrorreporting.v1beta1.ReportedErrorEvent"
)
T = TypeVar("T")


@dataclass(frozen=True)
class Failure:
    """Work that raised: ``transient`` failures want a redelivery, the others are acknowledged."""

    error: Exception
    transient: bool

    def raise_if_transient(self) -> None:
        """Re-raise a transient failure (its traceback intact) so the platform redelivers."""
        if self.transient:
            raise self.error


def attempt(
    work: Callable[[], T],
    *,
    catch_all: bool = False,
    transient: Callable[[BaseException], bool] = is_transient,
) -> T | Failure:
    """``work()``, or the :class:`Failure` it raised, classified by ``transient``.

    Only drivepipe errors are settled unless ``catch_all``: any other exception is a crash,
    and propagates so the delivery fails as it is (and is redelivered).
    """
    try:
        return work()
    except Exception as exc:
        if not (catch_all or isinstance(exc, DrivepipeError)):
            raise
        return Failure(exc, transient=transient(exc))


def unexpected_or_transient(exc: BaseException) -> bool:
    """The policy for storage events: only input drivepipe knows is bad is acknowledged.

    Any other exception (a bug, a module missing from the package) is redelivered like a
    transient failure, so it ends retried and then on the function's failure destination,
    never acknowledged as if the input were at fault.
    """
    return is_transient(exc) or not isinstance(exc, DrivepipeError)


def queue_item_transient(exc: BaseException) -> bool:
    """The policy for queued work items: every failure is redelivered but a malformed envelope.

    The queue's dead-letter queue bounds the attempts, and an item acknowledged without a
    result would leave its fanned-out run waiting for it forever.
    """
    return not isinstance(exc, EventError | BadWorkItem)


def log_failure(
    log: logging.Logger, name: str, failure: Failure, context: Mapping[str, Any]
) -> None:
    """Log a settled failure: transient with its traceback, permanent for Error Reporting."""
    if failure.transient:
        log.error(
            "%s failed transiently; redelivery wanted",
            name,
            exc_info=failure.error,
            extra=dict(context),
        )
        return
    log.error(
        "%s dropped a delivery: %s",
        name,
        failure.error,
        extra={**context, "@type": REPORTED_ERROR},
    )
