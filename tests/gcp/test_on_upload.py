"""on_upload served by functions-framework: GCS finalize CloudEvents, binary and structured.

Objects are really uploaded to gcp-storage-emulator with google-cloud-storage; the event is
built from the stored blob exactly as GCS sends it, and the outputs are read back from the
output bucket.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pandas as pd
import pytest

from devstack.gcp_cloudevents import (
    CloudEventMessage,
    Mode,
    deliver,
    gcs_finalize_event,
    object_resource,
    resource_from_blob,
)
from devstack.gcp_dev import GcpDevStack
from tests.gcp.conftest import function_logs, logs_for_event

CSV = "Order ID,Units,Unit Price\nX1,4,1.00\nX2,0,1.00\nX3,9,2.50\n"


def upload(stack: GcpDevStack, name: str, data: str | bytes, content_type: str = "text/csv") -> Any:
    """Upload to the input bucket; returns the stored blob (with generation, md5, ...)."""
    blob = stack.client.bucket(stack.input_bucket).blob(name)
    blob.upload_from_string(data, content_type=content_type)
    blob.reload()
    return blob


def send(stack: GcpDevStack, event: CloudEventMessage, mode: Mode = "binary") -> dict[str, Any]:
    """Deliver to on_upload; return the function's outcome log record for this event."""
    delivery = deliver(stack.url("on_upload"), event, mode=mode)
    assert delivery.status == 200, delivery.text
    records = logs_for_event(stack.functions["on_upload"], event.attributes["id"])
    assert records, "on_upload logged nothing for the event"
    return records[-1]


def read_output(stack: GcpDevStack, summary: dict[str, Any]) -> tuple[str, pd.DataFrame]:
    """The single output object a run wrote, found through its manifest."""
    bucket = stack.client.bucket(stack.output_bucket)
    manifest_key = summary["manifest"].split(f"gs://{stack.output_bucket}/", 1)[1]
    manifest = json.loads(bucket.blob(manifest_key).download_as_bytes())
    (record,) = manifest["inputs"]
    (key,) = record["output_keys"]
    prefix = summary["destination"].split(f"gs://{stack.output_bucket}/", 1)[1].rstrip("/")
    data = bucket.blob(f"{prefix}/{key}").download_as_bytes()
    return f"{prefix}/{key}", pd.read_parquet(io.BytesIO(data))


@pytest.mark.parametrize(
    ("name", "mode"),
    [
        ("incoming/sales/plain.csv", "binary"),
        ("incoming/sales/with space + plus.csv", "binary"),
        ("incoming/sales/ventes été 東京.csv", "structured"),
    ],
)
def test_finalize_event_transforms_the_upload(gcp_stack: GcpDevStack, name: str, mode: Mode):
    blob = upload(gcp_stack, name, CSV)
    record = send(gcp_stack, gcs_finalize_event(resource_from_blob(blob)), mode)

    assert record["severity"] == "INFO"
    assert record["outcome"] == "transformed"
    assert record["object"] == f"gs://{gcp_stack.input_bucket}/{name}"
    assert record["generation"] == str(blob.generation)
    key, frame = read_output(gcp_stack, record["summary"])
    assert key.startswith("sales/")
    # normalize_columns + filter "units > 0" from the shipped drivepipe.toml
    assert list(frame["order_id"]) == ["X1", "X3"]
    assert list(frame["units"]) == [4, 9]


def test_duplicate_delivery_is_processed_once(gcp_stack: GcpDevStack):
    blob = upload(gcp_stack, "incoming/sales/dup.csv", CSV)
    resource = resource_from_blob(blob)
    first = send(gcp_stack, gcs_finalize_event(resource))
    assert first["outcome"] == "transformed"
    key, _ = read_output(gcp_stack, first["summary"])
    output = gcp_stack.client.bucket(gcp_stack.output_bucket).get_blob(key)

    # Same bucket, name and generation: a redelivery (new event id, other content mode).
    second = send(gcp_stack, gcs_finalize_event(resource), "structured")

    assert second["outcome"] == "duplicate"
    assert second.get("summary") is None
    again = gcp_stack.client.bucket(gcp_stack.output_bucket).get_blob(key)
    assert again.generation == output.generation, "the output was written a second time"


def test_overwrite_is_a_new_generation_and_is_processed_again(gcp_stack: GcpDevStack):
    first_blob = upload(gcp_stack, "incoming/sales/overwrite.csv", CSV)
    first = send(gcp_stack, gcs_finalize_event(resource_from_blob(first_blob)))
    second_blob = upload(gcp_stack, "incoming/sales/overwrite.csv", "Order ID,Units\nZ9,1\n")
    assert second_blob.generation != first_blob.generation

    second = send(gcp_stack, gcs_finalize_event(resource_from_blob(second_blob)))

    assert (first["outcome"], second["outcome"]) == ("transformed", "transformed")
    _, frame = read_output(gcp_stack, second["summary"])
    assert list(frame["order_id"]) == ["Z9"]


@pytest.mark.parametrize(
    ("name", "reason_part"),
    [
        ("sales/_runs/20240101T000000Z-abcdef12.json", "bookkeeping"),
        ("_state/sales.json", "bookkeeping"),
        ("incoming/sales/_quarantine/x.csv", "bookkeeping"),
        ("unrelated/file.csv", "no pipeline"),
    ],
)
def test_objects_outside_the_pipelines_are_ignored(
    gcp_stack: GcpDevStack, name: str, reason_part: str
):
    blob = upload(gcp_stack, name, CSV)
    before = {b.name for b in gcp_stack.client.list_blobs(gcp_stack.output_bucket)}

    record = send(gcp_stack, gcs_finalize_event(resource_from_blob(blob)))

    assert record["outcome"] == "ignored"
    assert reason_part in record["reason"]
    after = {b.name for b in gcp_stack.client.list_blobs(gcp_stack.output_bucket)}
    assert after == before


def test_the_functions_own_output_never_triggers_work(gcp_stack: GcpDevStack):
    """Even if the output bucket also triggered on_upload, its objects would be ignored."""
    resource = object_resource(
        gcp_stack.output_bucket, "sales/plain.parquet", generation=7, size=10
    )
    record = send(gcp_stack, gcs_finalize_event(resource))
    assert record["outcome"] == "ignored"
    assert "output" in record["reason"]


def test_bad_input_file_is_acknowledged_not_retried(gcp_stack: GcpDevStack):
    blob = upload(
        gcp_stack,
        "incoming/sales/broken.csv",
        b"\x00\x01garbage\xff\xfe" * 50,
        content_type="application/octet-stream",
    )
    record = send(gcp_stack, gcs_finalize_event(resource_from_blob(blob)))

    assert record["outcome"] == "transformed"  # the run happened; the file failed in it
    failed = record["summary"]["failed"]
    assert [f["path"] for f in failed] == ["broken.csv"]
    assert record["summary"]["counts"]["failed"] == 1
    assert record["severity"] == "ERROR"  # quarantined and acknowledged: an alert can fire
    (core,) = [
        r
        for r in function_logs(gcp_stack.functions["on_upload"])
        if r["message"] == "object failed" and r.get("path") == "broken.csv"
    ]
    assert core["severity"] == "ERROR" and core["status"] == "failed" and core["error"]


def test_a_bad_request_file_is_logged_as_error_and_acknowledged(gcp_stack: GcpDevStack):
    blob = upload(gcp_stack, "requests/bad.json", b'{"pipeline": 42}', "application/json")
    record = send(gcp_stack, gcs_finalize_event(resource_from_blob(blob)))

    assert record["outcome"] == "ignored"
    assert record["reason"].startswith("bad request file: pipeline")
    (line,) = [
        r
        for r in function_logs(gcp_stack.functions["on_upload"])
        if r["message"] == "bad request file" and r.get("url", "").endswith("/requests/bad.json")
    ]
    assert line["severity"] == "ERROR"


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_wrong_event_type_is_logged_and_acknowledged(gcp_stack: GcpDevStack, mode: Mode):
    resource = object_resource(gcp_stack.input_bucket, "incoming/sales/a.csv", generation=1, size=1)
    event = gcs_finalize_event(resource)
    wrong = CloudEventMessage(
        {**event.attributes, "type": "google.cloud.storage.object.v1.deleted"}, event.data
    )
    record = send(gcp_stack, wrong, mode)
    assert record["severity"] == "ERROR"
    assert "expected 'google.cloud.storage.object.v1.finalized'" in record["message"]


def test_event_without_object_name_is_logged_and_acknowledged(gcp_stack: GcpDevStack):
    event = gcs_finalize_event(
        object_resource(gcp_stack.input_bucket, "x.csv", generation=1, size=1)
    )
    data = {k: v for k, v in event.data.items() if k != "name"}
    record = send(gcp_stack, CloudEventMessage(event.attributes, data))
    assert record["severity"] == "ERROR"
    assert "missing field 'name'" in record["message"]


def test_a_body_that_is_not_a_cloudevent_is_rejected(gcp_stack: GcpDevStack):
    import requests

    response = requests.post(
        gcp_stack.url("on_upload"),
        data=b"{}",
        timeout=30,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400


@pytest.fixture(scope="module")
def on_upload_without_output_bucket(gcp_stack: GcpDevStack):
    """on_upload whose output bucket does not exist: every data file fails transiently."""
    from devstack.gcp_dev import FunctionServer

    env = {**gcp_stack.function_env(), "DRIVEPIPE_OUTPUT_BUCKET": "gcp-out-missing-bucket"}
    with FunctionServer("on_upload", env) as server:
        yield server


def test_transient_failure_fails_the_delivery_so_it_is_redelivered(
    gcp_stack: GcpDevStack, on_upload_without_output_bucket
):
    blob = upload(gcp_stack, "incoming/sales/retry-me.csv", CSV)
    event = gcs_finalize_event(resource_from_blob(blob))

    delivery = deliver(on_upload_without_output_bucket.url, event)

    assert delivery.status == 503  # with --retry, Eventarc redelivers on any non-2xx
    (record,) = logs_for_event(on_upload_without_output_bucket, event.attributes["id"])
    assert record["severity"] == "ERROR"
    assert "redelivery" in record["message"]
    assert "gcp-out-missing-bucket" in record["exception"]
