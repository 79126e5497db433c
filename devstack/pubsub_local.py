"""A LOCAL STAND-IN for Pub/Sub push delivery to Cloud Functions: not the Pub/Sub emulator.

The official emulator needs Java and gcloud. This small server accepts the REST ``publish``
call (``POST /v1/projects/P/topics/T:publish``, as :class:`shared.run.fanout.queues.PubSubTopic`
sends it with ``PUBSUB_EMULATOR_HOST``) and delivers each message to the function subscribed
to the topic as the CloudEvent Eventarc sends (``google.cloud.pubsub.topic.v1.messagePublished``,
binary mode), through a pool of ``max_instances`` concurrent deliveries. A delivery answered
with a non-2xx status (or a dropped connection) is retried, like ``--retry``, with a short
backoff; after ``max_delivery_attempts`` the message is published to the subscription's
dead-letter topic with the ``CloudPubSubDeadLetterSource*`` attributes Pub/Sub adds.
Deliveries carry ``deliveryAttempt`` only when ``include_delivery_attempt`` is set. With
``publishers`` (the topics the functions' service account may publish to) a publish to any other
topic is refused 403 ``PERMISSION_DENIED``, as Pub/Sub refuses a caller without
``pubsub.topics.publish`` on the topic.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests

from devstack.gcp_cloudevents import PUBSUB_PUBLISHED, CloudEventMessage, deliver

_PUBLISH = re.compile(r"^/v1/(projects/[^/]+/topics/[^/:]+):publish$")


@dataclass
class Subscription:
    """A push subscription: topic → function URL, with its dead-letter policy."""

    topic: str  # projects/P/topics/T
    push_url: str
    max_delivery_attempts: int = 5
    dead_letter_topic: str | None = None
    name: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            project, topic = self.topic.split("/")[1], self.topic.rsplit("/", 1)[-1]
            self.name = f"projects/{project}/subscriptions/eventarc-local-{topic}-sub"


@dataclass
class Stats:
    """What the stand-in did."""

    published: int = 0
    delivered: int = 0
    failed_deliveries: int = 0
    dead_lettered: int = 0
    outstanding: int = 0
    errors: list[str] = field(default_factory=list)


class PubSubStandIn:
    """The stand-in server; use as a context manager. ``host`` is for PUBSUB_EMULATOR_HOST."""

    def __init__(
        self,
        *,
        max_instances: int = 4,
        retry_backoff: float = 0.05,
        include_delivery_attempt: bool = False,
        delivery_timeout: float = 300.0,
        on_publish: Callable[[str, dict[str, Any]], None] | None = None,
        publishers: Iterable[str] | None = None,
    ) -> None:
        self.on_publish = on_publish  # (topic, message): e.g. print a run notification
        # Topics the caller may publish to over HTTP (pubsub.topics.publish, as
        # deploy.gcp_grants.runtime_topic_grants reads them off the deploy script); None: any.
        self.publishers = None if publishers is None else frozenset(publishers)
        self.refused: list[str] = []  # topics a publish was refused on
        self.subscriptions: dict[str, list[Subscription]] = {}
        self.stats = Stats()
        self.retry_backoff = retry_backoff
        self.include_delivery_attempt = include_delivery_attempt
        self.delivery_timeout = delivery_timeout
        self._pool = ThreadPoolExecutor(max_workers=max_instances, thread_name_prefix="push")
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._session = requests.Session()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None
        self._held: list[tuple[Subscription, dict[str, Any], int]] | None = None
        self.published: dict[str, list[dict[str, Any]]] = {}
        # Called after every delivery attempt with (subscription, message, result or None):
        # the dev stacks print a line per push_worker invocation with it.
        self.on_delivery: Callable[[Subscription, dict[str, Any], Any], None] | None = None

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``."""
        return f"127.0.0.1:{self._server.server_address[1]}"

    def subscribe(self, subscription: Subscription) -> None:
        """Push the topic's messages to ``subscription.push_url``."""
        self.subscriptions.setdefault(subscription.topic, []).append(subscription)

    def start(self) -> PubSubStandIn:
        """Serve in a daemon thread."""
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and delivering."""
        self._server.shutdown()
        self._server.server_close()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> PubSubStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def hold(self) -> None:
        """Accept publishes but deliver nothing until :meth:`release` (to watch a run start)."""
        with self._lock:
            if self._held is None:
                self._held = []

    def release(self) -> None:
        """Deliver everything held, and deliver at once from now on."""
        with self._lock:
            held, self._held = self._held or [], None
        for subscription, message, attempt in held:
            self._schedule(subscription, message, attempt)

    def wait_idle(self, timeout: float = 120.0) -> bool:
        """Block until no delivery is outstanding; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self.stats.outstanding == 0, timeout=timeout)

    # ---- publishing and delivery ------------------------------------------------------------
    def publish(self, topic: str, messages: list[dict[str, Any]]) -> list[str]:
        """Accept messages (``data`` base64, ``attributes``) and schedule their delivery."""
        ids = []
        for message in messages:
            message_id = str(next(self._ids))
            ids.append(message_id)
            stored = {
                "data": message.get("data", ""),
                "attributes": dict(message.get("attributes") or {}),
                "messageId": message_id,
                "publishTime": _now(),
            }
            with self._lock:
                self.stats.published += 1
                self.published.setdefault(topic, []).append(stored)
            if self.on_publish is not None:
                self.on_publish(topic, stored)
            for subscription in self.subscriptions.get(topic, []):
                self._schedule(subscription, stored, 1)
        return ids

    def _schedule(self, subscription: Subscription, message: dict[str, Any], attempt: int) -> None:
        with self._lock:
            if self._held is not None:
                self._held.append((subscription, message, attempt))
                return
            self.stats.outstanding += 1
        self._pool.submit(self._deliver, subscription, message, attempt)

    def _deliver(self, subscription: Subscription, message: dict[str, Any], attempt: int) -> None:
        try:
            ok = self._post(subscription, message, attempt)
            if ok:
                with self._lock:
                    self.stats.delivered += 1
            elif attempt >= subscription.max_delivery_attempts:
                self._dead_letter(subscription, message, attempt)
            else:
                time.sleep(min(self.retry_backoff * 2 ** (attempt - 1), 1.0))
                self._schedule(subscription, message, attempt + 1)
        except Exception as exc:  # keep delivering; record what went wrong
            with self._lock:
                self.stats.errors.append(repr(exc))
        finally:
            with self._idle:
                self.stats.outstanding -= 1
                self._idle.notify_all()

    def _post(self, subscription: Subscription, message: dict[str, Any], attempt: int) -> bool:
        data: dict[str, Any] = {
            "message": {**message, "message_id": message["messageId"]},
            "subscription": subscription.name,
        }
        if self.include_delivery_attempt:
            data["deliveryAttempt"] = attempt
        event = CloudEventMessage(
            attributes={
                "id": message["messageId"],
                "specversion": "1.0",
                "type": PUBSUB_PUBLISHED,
                "source": f"//pubsub.googleapis.com/{subscription.topic}",
                "time": message["publishTime"],
            },
            data=data,
        )
        try:
            result = deliver(
                subscription.push_url, event, timeout=self.delivery_timeout, session=self._session
            )
        except requests.RequestException:
            result = None
        if self.on_delivery is not None:
            self.on_delivery(subscription, message, result)
        if result is not None and result.ok:
            return True
        with self._lock:
            self.stats.failed_deliveries += 1
        return False

    def _dead_letter(self, subscription: Subscription, message: dict[str, Any], count: int) -> None:
        with self._lock:
            self.stats.dead_lettered += 1
        if subscription.dead_letter_topic:
            attributes = {
                **message["attributes"],
                "CloudPubSubDeadLetterSourceDeliveryCount": str(count),
                "CloudPubSubDeadLetterSourceSubscription": subscription.name.rsplit("/", 1)[-1],
                "CloudPubSubDeadLetterSourceSubscriptionProject": subscription.name.split("/")[1],
                "CloudPubSubDeadLetterSourceTopicPublishTime": message["publishTime"],
            }
            self.publish(
                subscription.dead_letter_topic,
                [{"data": message["data"], "attributes": attributes}],
            )

    # ---- HTTP -------------------------------------------------------------------------------
    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                match = _PUBLISH.match(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                    messages = body["messages"]
                    for m in messages:
                        base64.b64decode(m.get("data", ""), validate=True)
                except (ValueError, KeyError, TypeError):
                    return self._answer(400, {"error": {"code": 400, "message": "bad request"}})
                if match is None:
                    return self._answer(404, {"error": {"code": 404, "message": "not found"}})
                topic = match.group(1)
                if stand_in.publishers is not None and topic not in stand_in.publishers:
                    with stand_in._lock:
                        stand_in.refused.append(topic)
                    error = {
                        "code": 403,
                        "message": "User not authorized to perform this action.",
                        "status": "PERMISSION_DENIED",
                    }
                    return self._answer(403, {"error": error})
                ids = stand_in.publish(topic, messages)
                self._answer(200, {"messageIds": ids})

            def do_GET(self) -> None:
                self._answer(200, {"stand_in": "drivepipe local Pub/Sub push"})

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler


def _now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
