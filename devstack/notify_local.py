"""Local notification targets for ``make demo`` and ``drivepipe dev aws|gcp``.

- :class:`SnsInbox`: an SNS topic on moto_server with an SQS queue subscribed to it, the way
  an e-mail or SQS subscriber would hear about a run (the real boto3 client both ways).
- :func:`print_notification`: what an e-mail subscriber reads, from the event JSON.
- The Pub/Sub side is :class:`devstack.pubsub_local.PubSubStandIn`, whose ``on_publish``
  callback hands each published message over; the webhook side is
  :class:`devstack.webhook_receiver.WebhookReceiver`.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from typing import Any

from shared.run.notify.message import text_body

Printer = Callable[[str], None]


class SnsInbox:
    """An SNS topic with an SQS queue subscribed; :meth:`drain` returns what reached it."""

    def __init__(self, sns: Any, sqs: Any, name: str = "drivepipe-alerts-local") -> None:
        self.sqs = sqs
        self.topic_arn: str = sns.create_topic(Name=name)["TopicArn"]
        self.queue_url: str = sqs.create_queue(QueueName=f"{name}-inbox-{uuid.uuid4().hex[:6]}")[
            "QueueUrl"
        ]
        arn = sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])
        sns.subscribe(
            TopicArn=self.topic_arn, Protocol="sqs", Endpoint=arn["Attributes"]["QueueArn"]
        )

    def drain(self) -> list[dict[str, Any]]:
        """The run events published since the last call (SNS envelope unwrapped)."""
        events = []
        while True:
            got = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10)
            messages = got.get("Messages") or []
            if not messages:
                return events
            for message in messages:
                envelope = json.loads(message["Body"])
                events.append(json.loads(envelope["Message"]))
                self.sqs.delete_message(
                    QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"]
                )


def pubsub_event(message: dict[str, Any]) -> dict[str, Any]:
    """The run event a Pub/Sub message carries."""
    event: dict[str, Any] = json.loads(base64.b64decode(message.get("data", "")))
    return event


def print_notification(where: str, event: dict[str, Any], printer: Printer = print) -> None:
    """Print a run notification as its e-mail text, indented under ``where``."""
    printer(f"  notification via {where}:")
    for line in text_body(event).splitlines():
        printer(f"    | {line}")
