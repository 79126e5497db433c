"""The queue clients against real local servers: SQS on moto_server, Pub/Sub REST on the
local push stand-in; and the SQS pump's event-source-mapping semantics."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import requests

from devstack.pubsub_local import PubSubStandIn, Subscription
from devstack.servers import MotoServer, free_port
from devstack.sqs_pump import SqsPump, create_work_queues
from shared.drive import DriveFile
from shared.errors import ConfigError
from shared.run.fanout.items import PlannedFile, WorkItem
from shared.run.fanout.queues import PubSubTopic, SqsQueue, pubsub_topic_path, queue_from_env
from tests.conftest import unique_bucket_name

RUN_ID = "20261122T000000Z-0123abcd"


def items(count: int) -> list[WorkItem]:
    file = DriveFile(
        "f1", "a.csv", "dir/a.csv", "text/csv", 10, "0" * 32, "2026-01-01T00:00:00Z", False
    )
    return [
        WorkItem(RUN_ID, f"i{n:05d}", "p", "s3://b/p", (PlannedFile(file, "csv"),))
        for n in range(count)
    ]


def receive_all(sqs: Any, url: str) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        ).get("Messages", [])
        if not batch:
            return got
        got.extend(batch)


def test_sqs_send_batch_sends_every_item_in_tens(
    moto_server: MotoServer, s3_env: dict[str, str]
) -> None:
    sqs = moto_server.client("sqs")
    name = unique_bucket_name("q")
    url, _ = create_work_queues(sqs, name, visibility_timeout=60)
    assert SqsQueue(name).send_batch(items(23)) == []
    messages = receive_all(sqs, url)
    assert sorted(WorkItem.from_json(m["Body"]).item_id for m in messages) == [
        f"i{n:05d}" for n in range(23)
    ]
    assert messages[0]["MessageAttributes"]["run_id"]["StringValue"] == RUN_ID
    assert SqsQueue(url).send_batch(items(1)) == []  # a queue URL works as well as a name


def test_sqs_send_to_a_missing_queue_is_retryable(
    moto_server: MotoServer, s3_env: dict[str, str]
) -> None:
    from shared.errors import RetryableError

    with pytest.raises(RetryableError, match="not reachable"):
        SqsQueue("no-such-queue").send_batch(items(1))


def test_pubsub_publish_reaches_the_subscribed_function_as_a_cloudevent() -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    received: list[dict[str, Any]] = []

    class Function(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received.append({"type": self.headers["ce-type"], "data": body})
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Function)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    topic = "projects/local/topics/work"
    try:
        with PubSubStandIn(max_instances=2) as pubsub:
            pubsub.subscribe(Subscription(topic, f"http://127.0.0.1:{server.server_address[1]}/"))
            publisher = PubSubTopic(
                topic, endpoint=f"http://{pubsub.host}", session=requests.Session()
            )
            assert publisher.send_batch(items(3)) == []
            assert pubsub.wait_idle(30)
    finally:
        server.shutdown()
    assert len(received) == 3
    assert {r["type"] for r in received} == {"google.cloud.pubsub.topic.v1.messagePublished"}
    data = base64.b64decode(received[0]["data"]["message"]["data"])
    assert WorkItem.from_json(data).run_id == RUN_ID


def test_pubsub_publish_to_an_unreachable_endpoint_returns_every_item_unsent() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    topic = PubSubTopic("projects/p/topics/t", endpoint=endpoint, session=requests.Session())
    assert len(topic.send_batch(items(4))) == 4


def test_queue_from_env_and_topic_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DRIVEPIPE_FANOUT_QUEUE", raising=False)
    monkeypatch.delenv("DRIVEPIPE_FANOUT_TOPIC", raising=False)
    assert queue_from_env() is None
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "proj")
    assert pubsub_topic_path("work") == "projects/proj/topics/work"
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT")
    monkeypatch.delenv("GCP_PROJECT", raising=False)
    with pytest.raises(ConfigError, match="GOOGLE_CLOUD_PROJECT"):
        pubsub_topic_path("work")


def test_pump_keeps_only_reported_failures_and_all_of_a_crashed_batch(
    moto_server: MotoServer, s3_env: dict[str, str]
) -> None:
    sqs = moto_server.client("sqs")
    url, dlq = create_work_queues(sqs, unique_bucket_name("pq"), max_receive_count=2)
    for n in range(3):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{n}")
    seen: list[dict[str, Any]] = []

    def fail_m1(event: dict[str, Any]) -> dict[str, Any]:
        seen.extend(event["Records"])
        return {
            "batchItemFailures": [
                {"itemIdentifier": r["messageId"]} for r in event["Records"] if r["body"] == "m1"
            ]
        }

    pump = SqsPump(sqs, url, fail_m1, batch_size=10)
    while pump.poll_once():
        pass
    record = seen[0]
    assert record["eventSource"] == "aws:sqs" and record["eventSourceARN"].endswith(
        url.rsplit("/", 1)[-1]
    )
    assert {"messageId", "receiptHandle", "body", "attributes", "md5OfBody", "awsRegion"} <= set(
        record
    )
    assert [r["attributes"]["ApproximateReceiveCount"] for r in seen if r["body"] == "m1"] == [
        "1",
        "2",
    ]
    assert sorted(r["body"] for r in seen if r["body"] != "m1") == ["m0", "m2"]  # deleted once done
    dead = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10).get("Messages", [])
    assert [m["Body"] for m in dead] == ["m1"]  # redrive after maxReceiveCount

    def crash(event: dict[str, Any]) -> Any:
        raise RuntimeError("function error")

    sqs.send_message(QueueUrl=url, MessageBody="x")
    crashing = SqsPump(sqs, url, crash)
    assert crashing.poll_once() == 1
    assert crashing.failed_messages == 1 and "function error" in crashing.errors[0]


def test_a_work_item_carries_the_output_path_the_planner_chose() -> None:
    [plain] = items(1)
    assert "output_path" not in plain.to_json()  # unchanged bodies for unrenamed files
    file = plain.files[0].file
    renamed = PlannedFile(file, "csv", "dir/a~1234abcd.csv", "output renamed: dir/a.csv is ...")
    item = WorkItem(RUN_ID, "i00000", "p", "s3://b/p", (renamed,))
    assert WorkItem.from_json(item.to_json()).files == (renamed,)
    assert WorkItem.from_json(plain.to_json()).files == plain.files
