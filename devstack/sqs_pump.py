"""Lambda's SQS event source mapping, played locally against moto_server.

``chalice local`` never invokes SQS handlers. :class:`SqsPump` does what the event source
mapping does: receive up to ``batch_size`` messages (``AttributeNames=All``), hand them to the
function as a real SQS event (``Records[].messageId``, ``receiptHandle``, ``body``,
``attributes.ApproximateReceiveCount``, ``eventSource: aws:sqs``, ``eventSourceARN`` ...), then
delete what succeeded. With ``ReportBatchItemFailures`` only the ``batchItemFailures`` stay;
a handler that raises leaves the whole batch. Failed messages are made visible again at once
(``VisibilityTimeout=0``) instead of after the queue's visibility timeout, to keep local runs
quick; the queue's redrive policy still moves a message to the DLQ after ``maxReceiveCount``.

:class:`SqsEventSources` runs one pump per ``@app.on_sqs_message`` handler of a Chalice app, as
its deployed event source mappings would; :func:`create_fanout_queues` makes the fan-out work
queue and its DLQ and names them for the app. ``devstack.aws_dev`` (``drivepipe dev aws``) and
``devstack.fanout_dev aws`` both use them.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.run.fanout.queues import DLQ_ENV, QUEUE_ENV

Invoke = Callable[[dict[str, Any]], Any]
Invoker = Callable[[str, str], Invoke]  # (function, queue name) -> what the pump calls
DEFAULT_REGION = "us-east-1"


def queue_arn(sqs: Any, queue_url: str) -> str:
    """The ARN of a queue."""
    attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    arn: str = attrs["Attributes"]["QueueArn"]
    return arn


def create_work_queues(
    sqs: Any,
    name: str,
    *,
    max_receive_count: int = 5,
    visibility_timeout: int = 900,
) -> tuple[str, str]:
    """Create ``name`` and ``name-dlq`` with a redrive policy; returns both URLs."""
    dlq_url: str = sqs.create_queue(
        QueueName=f"{name}-dlq", Attributes={"MessageRetentionPeriod": "1209600"}
    )["QueueUrl"]
    redrive = {"deadLetterTargetArn": queue_arn(sqs, dlq_url), "maxReceiveCount": max_receive_count}
    url: str = sqs.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": str(visibility_timeout),
            "RedrivePolicy": json.dumps(redrive),
        },
    )["QueueUrl"]
    return url, dlq_url


def create_fanout_queues(sqs: Any, name: str, *, max_receive_count: int) -> dict[str, str]:
    """Create the fan-out work queue ``name`` and ``name-dlq`` (:func:`create_work_queues`).

    Returns the environment that points the Chalice app at them (``DRIVEPIPE_FANOUT_QUEUE``,
    ``DRIVEPIPE_FANOUT_DLQ``); set it before the app is imported.
    """
    create_work_queues(sqs, name, max_receive_count=max_receive_count)
    return {QUEUE_ENV: name, DLQ_ENV: f"{name}-dlq"}


def lambda_record(
    message: dict[str, Any], arn: str, region: str = DEFAULT_REGION
) -> dict[str, Any]:
    """One ``Records[]`` entry of the SQS event Lambda delivers, from a ReceiveMessage entry."""
    attributes = {
        k: str(v)
        for k, v in message.get("Attributes", {}).items()
        if k
        in (
            "ApproximateReceiveCount",
            "SentTimestamp",
            "SenderId",
            "ApproximateFirstReceiveTimestamp",
        )
    }
    message_attributes = {
        name: {
            "stringValue": value.get("StringValue"),
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": value.get("DataType", "String"),
        }
        for name, value in (message.get("MessageAttributes") or {}).items()
    }
    body = message["Body"]
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": body,
        "attributes": attributes,
        "messageAttributes": message_attributes,
        "md5OfBody": message.get("MD5OfBody") or hashlib.md5(body.encode()).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": arn,
        "awsRegion": region,
    }


def chalice_invoker(app: Any, function: str, memory_size: int = 2048) -> Invoke:
    """Call a Chalice event handler as ``chalice.test.Client.lambda_.invoke`` does.

    The test client swaps ``os.environ`` for each call, which is not thread-safe; pumps run in
    threads, so this calls the same ``app.handler_map[function](event, LambdaContext)``
    without the swap.
    """
    from chalice.test import FunctionNotFoundError, LambdaContext

    if function not in app.handler_map:
        raise FunctionNotFoundError(function)
    handler = app.handler_map[function]

    def invoke(event: dict[str, Any]) -> Any:
        return handler(event, LambdaContext(function, memory_size=memory_size))

    return invoke


class SqsPump:
    """Receive → invoke → delete, like one concurrent Lambda poller on one queue."""

    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        invoke: Invoke,
        *,
        batch_size: int = 5,
        region: str = DEFAULT_REGION,
        report_batch_item_failures: bool = True,
    ) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.invoke = invoke
        self.batch_size = batch_size
        self.region = region
        self.partial = report_batch_item_failures
        self.arn = queue_arn(sqs, queue_url)
        self.invocations = 0
        self.failed_messages = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def poll_once(self, wait_seconds: int = 0) -> int:
        """One receive + invoke + delete; returns how many messages were received."""
        answer = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=self.batch_size,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
            WaitTimeSeconds=wait_seconds,
        )
        messages = answer.get("Messages", [])
        if not messages:
            return 0
        event = {"Records": [lambda_record(m, self.arn, self.region) for m in messages]}
        self.invocations += 1
        try:
            payload = self.invoke(event)
            failed = self._failed_ids(payload, messages)
        except Exception as exc:  # the function errored: the whole batch comes back
            self.errors.append(f"{type(exc).__name__}: {exc}")
            failed = {m["MessageId"] for m in messages}
        done = [m for m in messages if m["MessageId"] not in failed]
        if done:
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(done)
                ],
            )
        for message in messages:
            if message["MessageId"] in failed:
                self.failed_messages += 1
                self.sqs.change_message_visibility(
                    QueueUrl=self.queue_url,
                    ReceiptHandle=message["ReceiptHandle"],
                    VisibilityTimeout=0,
                )
        return len(messages)

    def _failed_ids(self, payload: Any, messages: list[dict[str, Any]]) -> set[str]:
        if not self.partial or not isinstance(payload, dict):
            return set()
        failures = payload.get("batchItemFailures") or []
        ids = {m["MessageId"] for m in messages}
        named = {str(f.get("itemIdentifier")) for f in failures if isinstance(f, dict)}
        # As Lambda does: a malformed response (unknown id) fails the whole batch.
        return ids if named - ids else named

    def drain(self, idle_polls: int = 2) -> int:
        """Poll until the queue looks empty ``idle_polls`` times in a row; returns messages."""
        total, idle = 0, 0
        while idle < idle_polls:
            got = self.poll_once()
            total += got
            idle = 0 if got else idle + 1
        return total

    def start(self, workers: int = 1, idle_sleep: float = 0.05) -> SqsPump:
        """Poll from ``workers`` threads (concurrent function instances) until :meth:`stop`."""

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    if not self.poll_once():
                        self._stop.wait(idle_sleep)
                except Exception as exc:  # keep pumping; a dev tool must not die on one error
                    self.errors.append(repr(exc))
                    self._stop.wait(idle_sleep)

        for n in range(workers):
            thread = threading.Thread(target=loop, name=f"sqs-pump-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop the polling threads (idempotent)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        self._threads.clear()


class QueueMissing(LookupError):
    """The queue an SQS handler is registered on does not exist."""


@dataclass(frozen=True)
class EventSourceMapping:
    """One SQS handler of the app and the pump feeding it."""

    function: str
    queue: str
    pump: SqsPump
    pollers: int

    def describe(self) -> str:
        """One line for the terminal: queue, handler, concurrency and batch size."""
        plural = "s" if self.pollers != 1 else ""
        return (
            f"{self.queue} -> {self.function} "
            f"({self.pollers} poller{plural}, up to {self.pump.batch_size} messages each)"
        )


class SqsEventSources:
    """Every ``@app.on_sqs_message`` handler of a Chalice app, fed from its queue by a pump.

    As Lambda's event source mapping would: ``batch_size`` messages per invocation and
    ``maximum_concurrency`` concurrent pollers (1 when the handler sets none). An app without
    SQS handlers has no mappings, and starting or stopping them does nothing. ``invoker``
    builds what each pump calls (default: :func:`chalice_invoker`).
    """

    def __init__(
        self,
        app: Any,
        sqs: Any,
        *,
        region: str = DEFAULT_REGION,
        invoker: Invoker | None = None,
    ) -> None:
        from chalice.app import SQSEventConfig

        make = invoker or (lambda function, _queue: chalice_invoker(app, function))
        self.mappings: list[EventSourceMapping] = []
        for source in app.event_sources:
            if not isinstance(source, SQSEventConfig):
                continue
            queue = source.queue or str(source.queue_arn).rsplit(":", 1)[-1]
            pump = SqsPump(
                sqs,
                _existing_queue_url(sqs, queue, source.name),
                make(source.name, queue),
                batch_size=source.batch_size,
                region=region,
            )
            self.mappings.append(
                EventSourceMapping(source.name, queue, pump, source.maximum_concurrency or 1)
            )

    def start(self) -> SqsEventSources:
        """Start polling every queue."""
        for mapping in self.mappings:
            mapping.pump.start(mapping.pollers)
        return self

    def stop(self) -> None:
        """Stop every pump, waiting for invocations in progress (idempotent)."""
        for mapping in self.mappings:
            mapping.pump.stop()

    def __enter__(self) -> SqsEventSources:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _existing_queue_url(sqs: Any, queue: str, function: str) -> str:
    try:
        url: str = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    except sqs.exceptions.QueueDoesNotExist:
        raise QueueMissing(
            f"SQS queue {queue!r} (the trigger of {function}) does not exist at "
            f"{sqs.meta.endpoint_url}: create it (devstack.sqs_pump.create_fanout_queues) "
            f"or unset {QUEUE_ENV} / {DLQ_ENV}"
        ) from None
    return url
