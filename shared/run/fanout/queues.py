"""Where work items go: an SQS queue (AWS) or a Pub/Sub topic (GCP), behind ``send_batch``.

``DRIVEPIPE_FANOUT_QUEUE`` (an SQS queue name or URL) or ``DRIVEPIPE_FANOUT_TOPIC``
(``projects/P/topics/T``, or ``T`` with ``GOOGLE_CLOUD_PROJECT``) picks the queue; with neither
set, nothing fans out. SQS honours ``AWS_ENDPOINT_URL`` (moto_server locally). Pub/Sub is
called over REST with google-auth (no google-cloud-pubsub in the function package);
``PUBSUB_EMULATOR_HOST=host:port`` sends it, unauthenticated, to a local stand-in instead.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from typing import Any, Protocol

from shared.errors import ConfigError, RetryableError
from shared.run.fanout.items import WorkItem

QUEUE_ENV = "DRIVEPIPE_FANOUT_QUEUE"
DLQ_ENV = "DRIVEPIPE_FANOUT_DLQ"  # AWS: the work queue's dead-letter queue (fanout_dead_letter)
TOPIC_ENV = "DRIVEPIPE_FANOUT_TOPIC"
SQS_BATCH = 10  # SendMessageBatch takes at most 10 entries
PUBSUB_BATCH = 500  # publish takes at most 1,000 messages / 10 MB per request
PUBSUB_SCOPE = "https://www.googleapis.com/auth/pubsub"


class WorkQueue(Protocol):
    """A queue of work items."""

    name: str

    def send_batch(self, items: Sequence[WorkItem]) -> list[WorkItem]:
        """Send the items; returns those that could not be sent (empty when all were)."""
        ...


def _attributes(item: WorkItem) -> dict[str, str]:
    return {"run_id": item.run_id, "item_id": item.item_id, "pipeline": item.pipeline}


class SqsQueue:
    """An SQS queue, by name or URL."""

    def __init__(self, queue: str, *, client: Any = None) -> None:
        import boto3

        self.client = client or boto3.client("sqs", endpoint_url=os.environ.get("AWS_ENDPOINT_URL"))
        self.name = queue
        self._url = queue if queue.startswith(("https://", "http://")) else None

    @property
    def url(self) -> str:
        """The queue URL (looked up once from its name)."""
        if self._url is None:
            try:
                self._url = self.client.get_queue_url(QueueName=self.name)["QueueUrl"]
            except Exception as exc:  # botocore ClientError / EndpointConnectionError
                raise RetryableError(f"SQS queue {self.name!r} is not reachable: {exc}") from exc
        return self._url

    def send_batch(self, items: Sequence[WorkItem]) -> list[WorkItem]:
        """``SendMessageBatch`` in tens; failed entries (or failed calls) are returned."""
        unsent: list[WorkItem] = []
        for start in range(0, len(items), SQS_BATCH):
            chunk = list(items[start : start + SQS_BATCH])
            entries = [
                {
                    "Id": str(n),
                    "MessageBody": item.to_json(),
                    "MessageAttributes": {
                        k: {"DataType": "String", "StringValue": v}
                        for k, v in _attributes(item).items()
                    },
                }
                for n, item in enumerate(chunk)
            ]
            try:
                answer = self.client.send_message_batch(QueueUrl=self.url, Entries=entries)
            except RetryableError:
                raise
            except Exception:
                unsent.extend(chunk)
                continue
            unsent.extend(chunk[int(failed["Id"])] for failed in answer.get("Failed", []))
        return unsent


def pubsub_topic_path(topic: str, project: str | None = None) -> str:
    """``projects/P/topics/T`` from a full path, or a bare name plus the project."""
    if topic.startswith("projects/"):
        return topic
    project = project or os.environ.get("GOOGLE_CLOUD_PROJECT") or os.environ.get("GCP_PROJECT")
    if not project:
        raise ConfigError(f"{TOPIC_ENV}={topic!r} needs GOOGLE_CLOUD_PROJECT (or a full path)")
    return f"projects/{project}/topics/{topic}"


class PubSubTopic:
    """A Pub/Sub topic, published to over REST (``POST .../topics/T:publish``)."""

    def __init__(self, topic: str, *, session: Any = None, endpoint: str | None = None) -> None:
        self.name = pubsub_topic_path(topic)
        emulator = os.environ.get("PUBSUB_EMULATOR_HOST")
        if endpoint is None:
            endpoint = f"http://{emulator}" if emulator else "https://pubsub.googleapis.com"
        self.endpoint = endpoint.rstrip("/")
        self._session = session
        self._anonymous = bool(emulator) and session is None

    def _http(self) -> Any:
        if self._session is None:
            if self._anonymous:
                import requests

                self._session = requests.Session()
            else:
                import google.auth
                from google.auth.transport.requests import AuthorizedSession

                credentials, _ = google.auth.default(scopes=[PUBSUB_SCOPE])
                self._session = AuthorizedSession(credentials)
        return self._session

    def publish(self, messages: list[dict[str, Any]]) -> bool:
        """Publish ready messages (``data`` base64, ``attributes``); False when refused.

        Transport errors propagate (the push webhook answers 503 on them).
        """
        url = f"{self.endpoint}/v1/{self.name}:publish"
        answer = self._http().post(url, json={"messages": messages}, timeout=30)
        return bool(answer.status_code == 200)

    def publish_one(self, data: bytes, attributes: dict[str, str]) -> Any:
        """Publish one message; returns the ``requests`` response (the caller judges it)."""
        message = {"data": base64.b64encode(data).decode("ascii"), "attributes": attributes}
        url = f"{self.endpoint}/v1/{self.name}:publish"
        return self._http().post(url, json={"messages": [message]}, timeout=30)

    def send_batch(self, items: Sequence[WorkItem]) -> list[WorkItem]:
        """Publish in batches; a batch whose request fails is returned unsent."""
        unsent: list[WorkItem] = []
        url = f"{self.endpoint}/v1/{self.name}:publish"
        for start in range(0, len(items), PUBSUB_BATCH):
            chunk = list(items[start : start + PUBSUB_BATCH])
            messages = [
                {
                    "data": base64.b64encode(item.to_json().encode("utf-8")).decode("ascii"),
                    "attributes": _attributes(item),
                }
                for item in chunk
            ]
            try:
                answer = self._http().post(url, json={"messages": messages}, timeout=30)
                ok = answer.status_code == 200 and len(answer.json().get("messageIds", [])) == len(
                    chunk
                )
            except Exception:  # requests / google-auth transport errors
                ok = False
            if not ok:
                unsent.extend(chunk)
        return unsent


def queue_from_env() -> WorkQueue | None:
    """The configured work queue, or ``None`` when fan-out has nowhere to send items."""
    queue = os.environ.get(QUEUE_ENV, "").strip()
    if queue:
        return SqsQueue(queue)
    topic = os.environ.get(TOPIC_ENV, "").strip()
    if topic:
        return PubSubTopic(topic)
    return None
