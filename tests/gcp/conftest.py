"""GCP fixtures: the three Cloud Functions served by real functions-framework processes.

One :class:`GcpDevStack` per session (per xdist worker) serves ``gcp_functions/main.py`` with
the shipped ``gcp_functions/drivepipe.toml``, pointed at the session's gcp-storage-emulator,
fresh buckets and a Drive emulator over a small folder built here. Its bucket watcher is off:
tests deliver the CloudEvents themselves, in the mode they are testing.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.gcp_dev import FunctionServer, GcpDevStack
from devstack.servers import GcsEmulator

# Drive folder served by the emulator: ``sales/**/*.csv`` feeds the scheduled "sales"
# pipeline, ``products/`` the on-request "products" pipeline.
DRIVE_FILES = {
    "sales/2024/q1.csv": "Order ID,Units,Unit Price\nA1,3,1.50\nA2,0,2.00\nA3,5,3.00\n",
    "sales/2025/q1.csv": "Order ID,Units,Unit Price\nB1,7,4.00\nB2,-1,4.00\n",
    "products/catalog.json": json.dumps(
        [{"SKU": "W-1", "Name": "Widget"}, {"SKU": "G-2", "Name": "Gadget"}]
    ),
    "notes/readme.txt": "not part of any pipeline\n",
}


def unique(prefix: str) -> str:
    """A fresh bucket name."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def drive_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small local folder the Drive emulator serves as the pipelines' Drive folder."""
    root = tmp_path_factory.mktemp("gcp-drive")
    for relpath, text in DRIVE_FILES.items():
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def gcp_stack(gcs_emulator: GcsEmulator, drive_root: Path) -> Iterator[GcpDevStack]:
    """sync_http, on_upload and on_schedule as real processes; stopped after the session."""
    stack = GcpDevStack(
        drive_root=drive_root,
        gcs_url=gcs_emulator.url,
        input_bucket=unique("gcp-in"),
        output_bucket=unique("gcp-out"),
        watch=False,
        retries=0,
        printer=lambda line: None,
    )
    with stack:
        yield stack


def function_logs(server: FunctionServer) -> list[dict[str, Any]]:
    """The JSON log lines the function printed (non-JSON lines are skipped)."""
    records = []
    for line in server.log_text().splitlines():
        if line.startswith("{"):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def logs_for_event(server: FunctionServer, event_id: str) -> list[dict[str, Any]]:
    """Log records the function wrote while handling one CloudEvent."""
    return [r for r in function_logs(server) if r.get("event_id") == event_id]


def wait_for(
    predicate: Callable[[], Any],
    timeout: float = 30.0,
    interval: float = 0.2,
    describe: Callable[[], str] | None = None,
) -> Any:
    """Poll until ``predicate()`` is truthy; return its value, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            details = describe() if describe else ""
            pytest.fail(f"condition not met within {timeout}s\n{details}")
        time.sleep(interval)
