"""Deliver a run's notification to every target: retried with backoff, never raising.

A delivery failure never fails the run. Each target is tried up to ``1 + options.retries``
times, waiting ``base * 2**n`` seconds (capped at :data:`MAX_BACKOFF_SECONDS`) between tries
(``DRIVEPIPE_NOTIFY_BACKOFF_SECONDS``, default 1; ``sleep`` is injectable); a permanent failure
(a 4xx answer, a missing variable) is not retried. What happened to each target is returned for
the manifest's ``notifications`` and logged, without the webhook URL.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from shared.errors import ConfigError
from shared.log import get_logger
from shared.run.manifest import utc_now
from shared.run.notify.message import reasons, run_event
from shared.run.notify.targets import (
    SendFailed,
    send_pubsub,
    send_sns,
    send_webhook,
    webhook_url,
)

if TYPE_CHECKING:
    from shared.run.manifest import RunManifest
    from shared.run.notify.options import NotifyOptions
    from shared.storage import Storage

BACKOFF_ENV = "DRIVEPIPE_NOTIFY_BACKOFF_SECONDS"
DEFAULT_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 8.0
Sleep = Callable[[float], None]
log = get_logger("notify")


@dataclass(frozen=True)
class Delivery:
    """What became of one target's message (stored in the manifest)."""

    target: str  # sns, pubsub or webhook
    to: str  # the topic, or where the webhook URL comes from (never the URL)
    ok: bool
    attempts: int
    error: str | None = None
    message_id: str | None = None
    at: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The manifest's form."""
        return asdict(self)


def backoff_base(env: dict[str, str] | None = None) -> float:
    """``DRIVEPIPE_NOTIFY_BACKOFF_SECONDS`` (0 or more), else 1 second."""
    raw = (os.environ if env is None else env).get(BACKOFF_ENV, "").strip()
    if not raw:
        return DEFAULT_BACKOFF_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= MAX_BACKOFF_SECONDS:
        raise ConfigError(f"{BACKOFF_ENV}={raw!r} must be a number of seconds from 0 to 8")
    return value


def with_retries(
    send: Callable[[], object], retries: int, *, base: float, sleep: Sleep
) -> tuple[int, object, SendFailed | None]:
    """``send()`` until it succeeds, fails permanently, or ``1 + retries`` tries are used.

    Returns (tries, what ``send`` returned, the last failure or None).
    """
    failure: SendFailed | None = None
    for attempt in range(1, retries + 2):
        try:
            return attempt, send(), None
        except SendFailed as exc:
            failure = exc
            if not exc.retryable or attempt > retries:
                return attempt, None, failure
            sleep(min(base * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS))
    return retries + 1, None, failure  # not reached: the loop returns


def notify_run(
    dest: Storage,
    manifest: RunManifest,
    options: NotifyOptions | None,
    *,
    sleep: Sleep = time.sleep,
    env: dict[str, str] | None = None,
) -> list[Delivery]:
    """Send the run's notification to every configured target when ``options.on`` says so."""
    if options is None or manifest.dry_run:
        return []
    why = reasons(manifest, options)
    if not why:
        return []
    event = run_event(dest, manifest, why)
    try:
        base = backoff_base(env)
    except ConfigError as exc:
        log.warning("%s; backing off from %s s", exc, DEFAULT_BACKOFF_SECONDS)
        base = DEFAULT_BACKOFF_SECONDS
    deliveries = []
    for target, to, send in _senders(options, event, env):
        tries, result, failure = with_retries(send, options.retries, base=base, sleep=sleep)
        delivery = Delivery(
            target=target,
            to=to,
            ok=failure is None,
            attempts=tries,
            error=str(failure) if failure else None,
            message_id=str(result) if failure is None and target != "webhook" else None,
            at=utc_now(),
        )
        deliveries.append(delivery)
        fields = {"run_id": manifest.run_id, "pipeline": manifest.pipeline, **delivery.to_dict()}
        if delivery.ok:
            log.info("notification sent", extra=fields)
        else:
            log.warning("notification not delivered", extra=fields)
    return deliveries


def _senders(
    options: NotifyOptions, event: dict[str, Any], env: dict[str, str] | None
) -> list[tuple[str, str, Callable[[], object]]]:
    found: list[tuple[str, str, Callable[[], object]]] = []
    if options.sns_topic:
        topic = options.sns_topic
        found.append(("sns", topic, lambda: send_sns(topic, event)))
    if options.pubsub_topic:
        pubsub = options.pubsub_topic
        found.append(("pubsub", pubsub, lambda: send_pubsub(pubsub, event)))
    if options.webhook_url_env or options.webhook_secret:
        where = (
            f"env {options.webhook_url_env}"
            if options.webhook_url_env
            else f"secret {options.webhook_secret}"
        )

        def webhook() -> int:
            return send_webhook(webhook_url(options, env), event, fmt=options.webhook_format)

        found.append(("webhook", where, webhook))
    return found
