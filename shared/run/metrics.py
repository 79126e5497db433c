"""Per-run metrics, written as one log line in each cloud's native form.

- **AWS**: a CloudWatch embedded metric format (EMF) document. CloudWatch Logs turns its
  ``_aws.CloudWatchMetrics`` directive into metrics in namespace ``drivepipe`` (override:
  ``DRIVEPIPE_METRICS_NAMESPACE``), dimension ``pipeline``; no PutMetricData call, no extra
  permission, nothing added to the run's time.
- **GCP**: a structured JSON line with ``severity`` (``WARNING`` when an input failed),
  ``message``, ``logging.googleapis.com/labels`` and the values under ``metrics``, which a
  log-based metric reads (``jsonPayload.metrics.InputsFailed``).

``DRIVEPIPE_METRICS`` picks ``emf``, ``gcp`` or ``off``; unset, it is ``emf`` on Lambda,
``gcp`` on Cloud Functions / Cloud Run and ``off`` elsewhere (the CLI prints its own summary).
The line goes to stdout whatever the log level, as both platforms read it from there.

Metric names (all ``Count`` unless said): one per input status (``InputsWritten``,
``InputsSkippedUnchanged``, ``InputsSkippedUnsupported``, ``InputsFailed``, ``InputsMoved``,
``InputsRemoved``, ``InputsRemovedKept``, ``InputsRemovalBlocked``), ``InputsQuarantined``,
``RowsWritten``, ``BytesWritten`` (Bytes), ``RunDuration`` (Milliseconds), ``DriveRequests``
and ``DriveRetries`` (inline runs), ``NotificationsFailed``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any, Literal

from shared.errors import ConfigError
from shared.log import in_cloud

if TYPE_CHECKING:
    from shared.run.manifest import RunManifest

MetricsFormat = Literal["emf", "gcp", "off"]
FORMAT_ENV = "DRIVEPIPE_METRICS"
NAMESPACE_ENV = "DRIVEPIPE_METRICS_NAMESPACE"
DEFAULT_NAMESPACE = "drivepipe"
EVENT = "drivepipe.run_metrics"
UNITS = {"BytesWritten": "Bytes", "RunDuration": "Milliseconds"}  # the others are Count


def metric_name(status: str) -> str:
    """``skipped_unchanged`` → ``InputsSkippedUnchanged``."""
    return "Inputs" + "".join(part.capitalize() for part in status.split("_"))


def _millis(start: str | None, end: str | None) -> int | None:
    if not start or not end:
        return None
    began = datetime.fromisoformat(start.replace("Z", "+00:00"))
    ended = datetime.fromisoformat(end.replace("Z", "+00:00"))
    return max(0, round((ended - began).total_seconds() * 1000))


def run_metrics(manifest: RunManifest) -> dict[str, int]:
    """The run's metric values by name."""
    values = {metric_name(status): n for status, n in manifest.counts().items()}
    values["InputsQuarantined"] = sum(1 for r in manifest.inputs if r.quarantine_key)
    summary = manifest.summary()
    values["RowsWritten"] = int(summary["rows_out"])
    values["BytesWritten"] = int(summary["bytes_out"])
    duration = _millis(manifest.started_at, manifest.ended_at)
    if duration is not None:
        values["RunDuration"] = duration
    if manifest.drive is not None:
        values["DriveRequests"] = int(manifest.drive.get("requests", 0))
        values["DriveRetries"] = int(manifest.drive.get("retries", 0))
    values["NotificationsFailed"] = sum(1 for n in manifest.notifications if not n.get("ok"))
    return values


def emf_document(
    manifest: RunManifest, values: dict[str, int], *, namespace: str, timestamp_ms: int
) -> dict[str, Any]:
    """The EMF document: the directive under ``_aws``, dimension and values at the root."""
    return {
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": [["pipeline"]],
                    "Metrics": [
                        {"Name": name, "Unit": UNITS.get(name, "Count")} for name in values
                    ],
                }
            ],
        },
        "pipeline": manifest.pipeline,
        "run_id": manifest.run_id,  # a property: searchable in Logs Insights, not a dimension
        "trigger": manifest.trigger,
        **values,
    }


def gcp_entry(manifest: RunManifest, values: dict[str, int], *, now: float) -> dict[str, Any]:
    """The structured log entry Cloud Logging reads from stdout (``jsonPayload``)."""
    return {
        "severity": "WARNING" if values.get("InputsFailed") else "INFO",
        "message": f"run {manifest.run_id} of {manifest.pipeline} finished",
        "time": datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds"),
        "event": EVENT,
        "logging.googleapis.com/labels": {"pipeline": manifest.pipeline},
        "pipeline": manifest.pipeline,
        "run_id": manifest.run_id,
        "trigger": manifest.trigger,
        "metrics": values,
    }


def metrics_format(env: dict[str, str] | None = None) -> MetricsFormat:
    """``DRIVEPIPE_METRICS``, else ``emf`` on Lambda, ``gcp`` on GCP, else ``off``."""
    source = os.environ if env is None else env
    raw = source.get(FORMAT_ENV, "").strip().lower()
    if raw in ("emf", "gcp", "off"):
        return raw  # type: ignore[return-value]
    if raw:
        raise ConfigError(f"{FORMAT_ENV}={raw!r} is not one of emf, gcp, off")
    if not in_cloud():
        return "off"
    return "emf" if source.get("AWS_LAMBDA_FUNCTION_NAME") else "gcp"


def emit_metrics(
    manifest: RunManifest,
    *,
    fmt: MetricsFormat | None = None,
    stream: IO[str] | None = None,
    clock: Callable[[], float] = time.time,
) -> dict[str, Any] | None:
    """Write the run's metric line (one JSON object) and return it; ``None`` when off."""
    fmt = fmt or metrics_format()
    if fmt == "off" or manifest.dry_run:
        return None
    values = run_metrics(manifest)
    now = clock()
    if fmt == "emf":
        namespace = os.environ.get(NAMESPACE_ENV, "").strip() or DEFAULT_NAMESPACE
        line = emf_document(manifest, values, namespace=namespace, timestamp_ms=int(now * 1000))
    else:
        line = gcp_entry(manifest, values, now=now)
    out = stream or sys.stdout
    out.write(json.dumps(line, ensure_ascii=False) + "\n")
    out.flush()
    return line
