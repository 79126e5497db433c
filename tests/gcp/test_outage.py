"""A GCS outage, served by functions-framework: 503 fast on HTTP, redelivery on events, JSON logs.

A :class:`FaultProxy` stands between the functions and gcp-storage-emulator; ``refuse`` makes
every connection fail as an unreachable GCS would. The functions run with a 2 s GCS retry
budget (``DRIVEPIPE_GCS_RETRY_SECONDS``) instead of the 20 s default, to keep the test short.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import requests

from devstack.faultproxy import FaultProxy
from devstack.gcp_cloudevents import deliver, gcs_finalize_event, resource_from_blob
from devstack.gcp_dev import FunctionServer, GcpDevStack, start_all
from devstack.servers import GcsEmulator
from tests.gcp.conftest import function_logs, logs_for_event

CSV = "Order ID,Units,Unit Price\nO1,2,1.00\n"


@pytest.fixture(scope="module")
def outage(
    gcs_emulator: GcsEmulator, gcp_stack: GcpDevStack
) -> Iterator[tuple[FaultProxy, dict[str, FunctionServer]]]:
    """sync_http and on_upload reaching GCS through a proxy that can refuse connections."""
    target = urlsplit(gcs_emulator.url)
    with FaultProxy(target.hostname or "127.0.0.1", target.port or 80) as proxy:
        env = {
            **gcp_stack.function_env(),
            "STORAGE_EMULATOR_HOST": proxy.url,
            "DRIVEPIPE_GCS_RETRY_SECONDS": "2",
        }
        servers = {t: FunctionServer(t, env) for t in ("sync_http", "on_upload")}
        start_all(servers.values())
        try:
            yield proxy, servers
        finally:
            proxy.set_mode("pass")
            for server in servers.values():
                server.stop()


def plain_tracebacks(server: FunctionServer) -> list[str]:
    """Lines the function printed outside its JSON log lines that belong to a traceback."""
    return [
        line
        for line in server.log_text().splitlines()
        if not line.startswith("{") and ("Traceback" in line or line.startswith("  File "))
    ]


def test_sync_answers_503_with_retry_after_when_gcs_is_down(outage):
    proxy, servers = outage
    proxy.set_mode("refuse")
    try:
        response = requests.post(
            f"{servers['sync_http'].url}/sync",
            data=json.dumps({"pipeline": "sales"}),
            headers={"Content-Type": "application/json"},
            timeout=120,
        )
    finally:
        proxy.set_mode("pass")
    assert response.status_code == 503, servers["sync_http"].log_text()[-3000:]
    assert response.headers["Retry-After"] == "30"
    error = response.json()["error"]
    assert error["code"] == "unavailable"
    assert "GCS unavailable" in error["message"]
    warnings = [r for r in function_logs(servers["sync_http"]) if "transient" in r["message"]]
    assert warnings and warnings[-1]["severity"] == "WARNING"
    assert plain_tracebacks(servers["sync_http"]) == []


def test_an_upload_during_an_outage_is_redelivered_then_processed(outage, gcp_stack: GcpDevStack):
    proxy, servers = outage
    blob = gcp_stack.client.bucket(gcp_stack.input_bucket).blob("incoming/sales/outage.csv")
    blob.upload_from_string(CSV, content_type="text/csv")
    blob.reload()
    event = gcs_finalize_event(resource_from_blob(blob))

    proxy.set_mode("refuse")
    try:
        failed = deliver(servers["on_upload"].url, event)
    finally:
        proxy.set_mode("pass")
    assert failed.status == 503  # Eventarc (--retry) redelivers on any non-2xx
    (record,) = logs_for_event(servers["on_upload"], event.attributes["id"])
    assert record["severity"] == "ERROR"
    assert record["event_type"] == "google.cloud.storage.object.v1.finalized"
    assert "redelivery wanted" in record["message"]
    assert "StorageUnavailable" in record["exception"]
    assert plain_tracebacks(servers["on_upload"]) == []

    again = deliver(servers["on_upload"].url, event)  # the redelivery, GCS back
    assert again.status == 200, again.text
    records = logs_for_event(servers["on_upload"], event.attributes["id"])
    assert records[-1]["outcome"] == "transformed"
    assert records[-1]["summary"]["counts"]["written"] == 1
