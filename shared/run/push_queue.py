"""Handing a push-triggered sync to the cloud's own machinery: an SQS message or a Pub/Sub one.

The webhook never syncs inline: it sends one small message naming the pipeline to
``DRIVEPIPE_PUSH_QUEUE`` (SQS; the ``push_worker`` Lambda consumes it) or
``DRIVEPIPE_PUSH_TOPIC`` (Pub/Sub; the ``push_worker`` Cloud Function), and the worker runs the
sync (:func:`shared.triggers.push.on_push_message`). The queues of the fan-out
(:mod:`shared.run.fanout.queues`) carry the messages: same clients, same local stand-ins.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import Any

from shared.errors import BadWorkItem, RetryableError
from shared.log import get_logger
from shared.settings import runtime_settings

log = get_logger("push")
KIND = "drivepipe.push"
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


@dataclass(frozen=True)
class PushMessage:
    """Run the owed sync of ``pipeline`` (why, for the logs)."""

    pipeline: str
    reason: str = "notification"

    def to_json(self) -> str:
        """The message body."""
        return json.dumps({"kind": KIND, "pipeline": self.pipeline, "reason": self.reason})

    @classmethod
    def from_json(cls, body: str | bytes) -> PushMessage:
        """Parse a message body; :class:`BadWorkItem` when it is not a push message."""
        try:
            data: Any = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise BadWorkItem("a push message is not JSON") from None
        if not isinstance(data, dict) or data.get("kind") != KIND:
            raise BadWorkItem(f"not a push message (kind must be {KIND!r})")
        pipeline = data.get("pipeline")
        if not isinstance(pipeline, str) or not _NAME.match(pipeline):
            raise BadWorkItem("a push message must name a pipeline")
        return cls(pipeline, str(data.get("reason") or "notification")[:200])


def configured() -> bool:
    """True when a push queue or topic is configured."""
    settings = runtime_settings()
    return bool(settings.push_queue or settings.push_topic)


def hand_off(message: PushMessage) -> bool:
    """Send ``message`` to the push queue or topic; False when neither is configured.

    Raises :class:`RetryableError` when the queue does not take it (the webhook then answers
    503, so Drive sends the notification again).
    """
    settings = runtime_settings()
    if settings.push_queue:
        _send_sqs(settings.push_queue, message)
    elif settings.push_topic:
        _publish(settings.push_topic, message)
    else:
        return False
    log.info("handed a sync off", extra={"pipeline": message.pipeline, "reason": message.reason})
    return True


def _send_sqs(queue: str, message: PushMessage) -> None:
    from shared.run.fanout.queues import SqsQueue

    sqs = SqsQueue(queue)
    try:
        sqs.client.send_message(QueueUrl=sqs.url, MessageBody=message.to_json())
    except RetryableError:
        raise
    except Exception as exc:  # botocore ClientError / EndpointConnectionError
        raise RetryableError(f"SQS queue {queue!r} did not take the push message: {exc}") from exc


def _publish(topic: str, message: PushMessage) -> None:
    from shared.run.fanout.queues import PubSubTopic

    pubsub = PubSubTopic(topic)
    data = base64.b64encode(message.to_json().encode()).decode("ascii")
    body = {"messages": [{"data": data, "attributes": {"pipeline": message.pipeline}}]}
    try:
        ok = pubsub.publish(body["messages"])
    except Exception as exc:  # requests / google-auth transport errors
        raise RetryableError(f"Pub/Sub topic {pubsub.name} is not reachable: {exc}") from exc
    if not ok:
        raise RetryableError(f"Pub/Sub topic {pubsub.name} refused the push message")
