"""on_schedule served by functions-framework: Cloud Scheduler → Pub/Sub CloudEvents."""

from __future__ import annotations

from typing import Any

import pytest

from devstack.gcp_cloudevents import CloudEventMessage, Mode, deliver, scheduler_event
from devstack.gcp_dev import GcpDevStack
from tests.gcp.conftest import logs_for_event


def send(stack: GcpDevStack, event: CloudEventMessage, mode: Mode = "binary") -> dict[str, Any]:
    """Deliver to on_schedule; return its last log record for this event."""
    delivery = deliver(stack.url("on_schedule"), event, mode=mode)
    assert delivery.status == 200, delivery.text
    records = logs_for_event(stack.functions["on_schedule"], event.attributes["id"])
    assert records, "on_schedule logged nothing for the event"
    return records[-1]


def output_names(stack: GcpDevStack, prefix: str) -> set[str]:
    return {b.name for b in stack.client.list_blobs(stack.output_bucket, prefix=prefix)}


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_named_pipeline_syncs_from_drive(gcp_stack: GcpDevStack, mode: Mode):
    record = send(gcp_stack, scheduler_event(["products"], project="local"), mode)

    assert record["pipelines"] == ["products"]
    (result,) = record["results"]
    assert result["pipeline"] == "products"
    assert result["summary"]["trigger"] == "scheduler"
    assert "products/products/products__catalog.jsonl" in output_names(gcp_stack, "products/")


def test_empty_message_runs_every_scheduled_pipeline(gcp_stack: GcpDevStack):
    record = send(gcp_stack, scheduler_event(None, body=""))

    assert record["pipelines"] is None
    # "sales" has scheduled = true, "products" does not
    assert [r["pipeline"] for r in record["results"]] == ["sales"]
    assert {
        "sales/sales/sales__2024__q1.parquet",
        "sales/sales/sales__2025__q1.parquet",
    } <= output_names(gcp_stack, "sales/")


def test_empty_pipelines_list_also_means_all_scheduled(gcp_stack: GcpDevStack):
    record = send(gcp_stack, scheduler_event([]))
    assert [r["pipeline"] for r in record["results"]] == ["sales"]


def test_unknown_pipeline_is_reported_not_retried(gcp_stack: GcpDevStack):
    record = send(gcp_stack, scheduler_event(["nope"]))
    assert record["results"] == [{"pipeline": "nope", "error": "unknown pipeline"}]


@pytest.mark.parametrize(
    ("body", "problem"),
    [("!!not base64!!", "base64"), ('{"pipelines": "sales"}', "list of names")],
)
def test_malformed_message_is_logged_and_acknowledged(
    gcp_stack: GcpDevStack, body: str, problem: str
):
    event = scheduler_event(None, body=body)
    if problem == "base64":
        message = {**event.data["message"], "data": body}
        event = CloudEventMessage(event.attributes, {**event.data, "message": message})
    record = send(gcp_stack, event)
    assert record["severity"] == "ERROR"
    assert problem in record["message"]


def test_storage_event_sent_to_on_schedule_is_dropped(gcp_stack: GcpDevStack):
    event = scheduler_event(["sales"])
    wrong = CloudEventMessage(
        {**event.attributes, "type": "google.cloud.storage.object.v1.finalized"}, event.data
    )
    record = send(gcp_stack, wrong)
    assert record["severity"] == "ERROR"
    assert "messagePublished" in record["message"]
