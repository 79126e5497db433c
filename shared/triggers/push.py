"""``POST /drive/notifications``: Drive's push notifications, checked, then handed off.

Drive POSTs an empty body with ``X-Goog-*`` headers (the "Notifications for resource changes"
guide). This route is public, since Drive cannot sign a request; what makes a notification
ours is its channel: the id must be one a push pipeline opened (:mod:`shared.run.channels`),
the resource id Drive's answer for it, and ``X-Goog-Channel-Token`` that channel's random token
from the secret store, compared in constant time. Then:

- ``sync`` (sent once when a channel opens): 200, no work;
- ``change``: recorded as a request (:func:`shared.run.pending.accept`) and handed to the push
  queue (:mod:`shared.run.push_queue`); the sync runs in the push worker, never here. A
  replayed or late message number records nothing; it is handed off again only while a sync
  is still owed (Drive retries a notification answered 503: the queue may not have it);
- missing headers: 400; an unknown channel or a wrong token: 403 (one answer for both); a body
  over :data:`MAX_BODY_BYTES`: 413; the store or the queue unreachable: 503 (Drive retries).

The token is never logged, echoed or stored outside the secret store.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.config import Pipeline
from shared.errors import ApiError, ConfigError, RetryableError, StorageError
from shared.log import get_logger
from shared.run import pending, push_queue
from shared.run.channel_secrets import read_token
from shared.run.channels import Channel, ChannelRecord
from shared.storage import Storage, open_storage
from shared.triggers import service
from shared.triggers.http import Response, error_response

log = get_logger("push")
MAX_BODY_BYTES = 4096  # changes notifications carry no body at all
CHANNEL_ID = re.compile(r"^drivepipe-[0-9a-f]{32}$")  # the ids shared.run.channels opens
REQUIRED = (
    "x-goog-channel-id",
    "x-goog-channel-token",
    "x-goog-resource-id",
    "x-goog-resource-state",
    "x-goog-message-number",
)
REFUSED = "unknown channel or wrong token"


@dataclass(frozen=True)
class Notification:
    """The headers of one notification that matter (the token is checked, then dropped)."""

    channel_id: str
    resource_id: str
    state: str
    number: int


def push_pipelines() -> list[Pipeline]:
    """The configured pipelines with ``push = true``."""
    return [p for p in service.config().pipelines.values() if p.push]


def webhook(method: str, headers: Mapping[str, str], body: bytes | str | None) -> Response:
    """Answer one request to the notifications route (see the module docstring)."""
    if method.upper() != "POST":
        return _refuse(405, "method_not_allowed", "use POST", {})
    lowered = {k.lower(): v for k, v in headers.items()}
    declared = lowered.get("content-length", "0")
    size = len(body or b"")
    if size > MAX_BODY_BYTES or (declared.isdigit() and int(declared) > MAX_BODY_BYTES):
        return _refuse(413, "body_too_large", f"body over {MAX_BODY_BYTES} bytes", lowered)
    missing = [name for name in REQUIRED if not lowered.get(name)]
    number = lowered.get("x-goog-message-number", "")
    if missing or not number.isdigit():
        what = ", ".join(missing) or "x-goog-message-number (not a number)"
        return _refuse(400, "not_a_notification", f"missing or bad headers: {what}", lowered)
    note = Notification(
        lowered["x-goog-channel-id"],
        lowered["x-goog-resource-id"],
        lowered["x-goog-resource-state"],
        int(number),
    )
    try:
        return _handle(note, lowered["x-goog-channel-token"])
    except (StorageError, RetryableError) as exc:
        log.error("notification not handled", extra={"channel": note.channel_id, "error": str(exc)})
        return error_response(ApiError("temporarily unavailable", status=503, code="unavailable"))
    except ConfigError as exc:
        log.error("notification not handled", extra={"channel": note.channel_id, "error": str(exc)})
        return error_response(ApiError("not configured for push", status=503, code="config"))


def _handle(note: Notification, token: str) -> Response:
    found = _find(note.channel_id) if CHANNEL_ID.match(note.channel_id) else None
    if found is None:
        return _refuse(403, "forbidden", REFUSED, {}, channel=note.channel_id, why="unknown")
    pipeline, dest, channel = found
    expected = read_token(channel.token_ref)
    same_token = hmac.compare_digest(expected.encode(), token.encode())
    if not same_token or not hmac.compare_digest(channel.resource_id, note.resource_id):
        why = "wrong token" if not same_token else "wrong resource id"
        return _refuse(403, "forbidden", REFUSED, {}, channel=note.channel_id, why=why)
    context = {"pipeline": pipeline.name, "channel": note.channel_id, "number": note.number}
    if note.state == "sync":
        log.info("notification channel confirmed", extra=context)
        return Response(200, {"status": "ok", "state": "sync"})
    if note.state != "change":
        log.info("notification ignored", extra={**context, "state": note.state})
        return Response(200, {"status": "ignored", "state": note.state})
    message = push_queue.PushMessage(pipeline.name, f"message {note.number} on {note.channel_id}")
    if not pending.accept(dest, pipeline.name, note.channel_id, note.number):
        # Replayed or late: nothing new. If a sync is still owed, hand it off again (a no-op
        # for a queue that has it already): Drive retries a notification we answered 503.
        if pending.owed(dest, pipeline.name) is not None:
            _hand_off(message)
        log.info("notification replayed or late: nothing new", extra=context)
        return Response(200, {"status": "duplicate"})
    _hand_off(message)
    return Response(200, {"status": "accepted", "pipeline": pipeline.name})


def _hand_off(message: push_queue.PushMessage) -> None:
    if not push_queue.hand_off(message):
        raise ConfigError("no push queue: set DRIVEPIPE_PUSH_QUEUE (AWS) or DRIVEPIPE_PUSH_TOPIC")


def _find(channel_id: str) -> tuple[Pipeline, Storage, Channel] | None:
    """The push pipeline that opened ``channel_id``, its destination and the channel."""
    for pipeline in push_pipelines():
        dest = open_storage(pipeline.output.url)
        channel = ChannelRecord.load(dest, pipeline.name).find(channel_id)
        if channel is not None:
            return pipeline, dest, channel
    return None


def _refuse(
    status: int, code: str, message: str, headers: Mapping[str, str], **context: Any
) -> Response:
    """A 4xx with a JSON error; the log line names the channel and why, never the token."""
    extra = {"status": status, **context}
    if "x-goog-channel-id" in headers:
        extra.setdefault("channel", headers["x-goog-channel-id"][:80])
    log.warning("notification refused: %s", context.get("why") or message, extra=extra)
    return error_response(ApiError(message, status=status, code=code))
