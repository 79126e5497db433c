"""``drivepipe dev gcp`` end to end: upload with google-cloud-storage, the output appears."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from devstack.gcp_dev import GcpDevStack
from devstack.servers import GcsEmulator
from tests.gcp.conftest import unique, wait_for

PRINTED: list[str] = []  # what the dev stack printed, one line per delivery


@pytest.fixture(scope="module")
def dev_stack(gcs_emulator: GcsEmulator, drive_root: Path) -> Iterator[GcpDevStack]:
    """The dev stack as `drivepipe dev gcp` runs it: bucket watcher on, fast polling."""
    stack = GcpDevStack(
        drive_root=drive_root,
        gcs_url=gcs_emulator.url,
        input_bucket=unique("dev-in"),
        output_bucket=unique("dev-out"),
        poll_interval=0.2,
        printer=PRINTED.append,
    )
    with stack:
        yield stack


def test_upload_to_the_emulated_bucket_produces_the_output(dev_stack: GcpDevStack):
    bucket = dev_stack.client.bucket(dev_stack.input_bucket)
    bucket.blob("incoming/sales/new week.csv").upload_from_string(
        "Order ID,Units\nN1,2\nN2,0\nN3,6\n", content_type="text/csv"
    )

    out = dev_stack.client.bucket(dev_stack.output_bucket)
    blob = wait_for(
        lambda: out.get_blob("sales/sales/new week.parquet"),
        timeout=60,
        describe=lambda: diagnostics(dev_stack),
    )
    frame = pd.read_parquet(io.BytesIO(blob.download_as_bytes()))
    assert list(frame["order_id"]) == ["N1", "N3"]
    # one printed line per delivery, with the function's answer (the output is durable before
    # the function answers: it still records the event as done, so wait for the answer too)
    delivered = wait_for(
        lambda: [line for line in PRINTED if "new week.csv" in line],
        timeout=30,
        describe=lambda: diagnostics(dev_stack),
    )
    assert len(delivered) == 1
    assert delivered[0].startswith("[on_upload] gs://") and " -> 200 " in delivered[0]


def diagnostics(stack: GcpDevStack) -> str:
    """What the bridge printed and what on_upload logged, for a failing wait."""
    printed = "\n".join(PRINTED)
    return f"bridge:\n{printed}\non_upload log tail:\n{stack.functions['on_upload'].log_tail()}"


def test_request_file_upload_starts_a_drive_sync(dev_stack: GcpDevStack):
    bucket = dev_stack.client.bucket(dev_stack.input_bucket)
    bucket.blob("requests/run-products.json").upload_from_string(
        '{"pipeline": "products"}', content_type="application/json"
    )

    out = dev_stack.client.bucket(dev_stack.output_bucket)
    wait_for(
        lambda: out.get_blob("products/products/products__catalog.jsonl"),
        timeout=60,
        describe=lambda: diagnostics(dev_stack),
    )
    assert all(delivery.ok for _, delivery in dev_stack.deliveries)


def test_schedule_on_demand(dev_stack: GcpDevStack):
    delivery = dev_stack.fire_schedule(["sales"])
    assert delivery.status == 200
    names = {
        b.name for b in dev_stack.client.list_blobs(dev_stack.output_bucket, prefix="sales/sales/")
    }
    # The Drive sync's files, in the sales table beside the upload test's (one table per pipeline).
    assert {"sales/sales/sales__2024__q1.parquet", "sales/sales/sales__2025__q1.parquet"} <= names
    assert PRINTED[-1].startswith("[on_schedule] schedule ['sales'] -> 200")


def test_the_malformed_sample_upload_is_notified_on_the_local_topic(dev_stack: GcpDevStack):
    bad = Path(__file__).resolve().parents[2] / "devstack/samples/drive/broken/bad.csv"
    bucket = dev_stack.client.bucket(dev_stack.input_bucket)
    bucket.blob("incoming/sales/bad.csv").upload_from_string(bad.read_bytes())
    [event] = wait_for(
        lambda: [e for e in dev_stack.notifications if e["failed"]],
        timeout=60,
        describe=lambda: diagnostics(dev_stack),
    )
    assert event["pipeline"] == "sales" and event["trigger"] == "gcs"
    assert event["failed"][0]["path"] == "bad.csv" and event["failed"][0]["quarantine_url"]
    printed = "\n".join(PRINTED)
    assert "notification via Pub/Sub projects/local/topics/drivepipe-alerts" in printed
    assert "| failed:   bad.csv: " in printed
