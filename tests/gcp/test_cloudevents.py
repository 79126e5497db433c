"""The locally built CloudEvents have GCP's shape and parse the way functions-framework parses."""

from __future__ import annotations

import base64
import json

import pytest
from cloudevents.http import from_http

from devstack.gcp_cloudevents import (
    GCS_FINALIZED,
    PUBSUB_PUBLISHED,
    gcs_finalize_event,
    object_resource,
    scheduler_event,
)
from shared.triggers.events import from_gcs_cloudevent, pipelines_from_pubsub

NAME = "incoming/sales/q 1 été+東京.csv"


def test_finalize_event_carries_the_object_resource_as_gcs_sends_it():
    event = gcs_finalize_event(
        object_resource("in-bkt", NAME, generation=1712, size=42, content_type="text/csv")
    )
    assert event.attributes["type"] == GCS_FINALIZED
    assert event.attributes["source"] == "//storage.googleapis.com/projects/_/buckets/in-bkt"
    assert event.attributes["subject"] == f"objects/{NAME}"
    data = event.data
    assert data["kind"] == "storage#object"
    assert data["name"] == NAME  # not URL-encoded in the data
    assert (data["generation"], data["metageneration"], data["size"]) == ("1712", "1", "42")
    assert data["id"] == f"in-bkt/{NAME}/1712"
    assert "%20" in data["selfLink"] and "/" not in data["selfLink"].split("/o/", 1)[1]
    for field in ("timeCreated", "updated", "storageClass", "md5Hash", "crc32c", "etag"):
        assert field in data


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_both_content_modes_parse_back_to_the_same_event(mode: str):
    event = gcs_finalize_event(object_resource("in-bkt", NAME, generation=9, size=1))
    headers, body = event.binary() if mode == "binary" else event.structured()
    if mode == "binary":
        assert headers["Content-Type"] == "application/json"
        assert {"ce-id", "ce-specversion", "ce-type", "ce-source", "ce-subject", "ce-time"} <= set(
            headers
        )
        headers["ce-subject"].encode("latin-1")  # header values must be transportable
    else:
        assert headers["Content-Type"].startswith("application/cloudevents+json")

    parsed = from_http(headers, body)  # what functions-framework does with the request

    assert parsed.data == event.data
    assert parsed["type"] == GCS_FINALIZED
    object_event = from_gcs_cloudevent(parsed.get_attributes(), parsed.data)
    assert (object_event.bucket, object_event.key, object_event.version) == ("in-bkt", NAME, "9")


def test_scheduler_event_wraps_the_message_like_pubsub():
    event = scheduler_event(["sales", "products"], project="p1", topic="t1")
    assert event.attributes["type"] == PUBSUB_PUBLISHED
    assert event.attributes["source"] == "//pubsub.googleapis.com/projects/p1/topics/t1"
    message = event.data["message"]
    assert json.loads(base64.b64decode(message["data"])) == {"pipelines": ["sales", "products"]}
    assert message["messageId"] == event.attributes["id"]
    assert event.data["subscription"].startswith("projects/p1/subscriptions/")
    parsed = from_http(*event.binary())
    assert pipelines_from_pubsub(parsed.get_attributes(), parsed.data) == ["sales", "products"]


@pytest.mark.parametrize("body", ["", '{"pipelines": []}'])
def test_empty_scheduler_message_means_all_scheduled(body: str):
    event = scheduler_event(None, body=body)
    assert pipelines_from_pubsub(event.attributes, event.data) is None
