"""Run metrics: valid CloudWatch EMF on AWS, structured JSON with a severity on GCP.

:func:`check_emf` checks a line against the EMF specification (CloudWatch's "Specification:
Embedded metric format"): one JSON object; ``_aws`` with an integer ``Timestamp`` in ms and a
``CloudWatchMetrics`` array of directives, each with a ``Namespace``, ``Dimensions`` (arrays of
at most 30 keys) and ``Metrics`` (``Name``, a known ``Unit``); every dimension key a string
member of the root and every metric name a number member of it.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from shared.errors import ConfigError
from shared.run.finish import finish_run
from shared.run.manifest import InputRecord, RunManifest
from shared.run.metrics import emit_metrics, metrics_format
from shared.storage import open_storage

# CloudWatch's StandardUnit values.
UNITS = {
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes",
    "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count",
    "Bytes/Second", "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second",
    "Terabytes/Second", "Bits/Second", "Kilobits/Second", "Megabits/Second", "Gigabits/Second",
    "Terabits/Second", "Count/Second", "None",
}  # fmt: skip
GCP_SEVERITIES = {"DEFAULT", "DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL"}
NOW = 1_780_000_000.25


def check_emf(line: str) -> dict[str, Any]:
    """Parse one EMF log line, failing on anything the specification forbids."""
    doc = json.loads(line)
    assert isinstance(doc, dict)
    meta = doc["_aws"]
    assert isinstance(meta["Timestamp"], int) and not isinstance(meta["Timestamp"], bool)
    directives = meta["CloudWatchMetrics"]
    assert isinstance(directives, list) and directives
    for directive in directives:
        assert set(directive) == {"Namespace", "Dimensions", "Metrics"}
        assert isinstance(directive["Namespace"], str) and directive["Namespace"]
        for dimension_set in directive["Dimensions"]:
            assert isinstance(dimension_set, list) and len(dimension_set) <= 30
            for key in dimension_set:
                assert isinstance(doc[key], str) and doc[key]
        assert 0 < len(directive["Metrics"]) <= 100
        for metric in directive["Metrics"]:
            assert isinstance(metric["Name"], str) and metric["Unit"] in UNITS
            value = doc[metric["Name"]]
            assert isinstance(value, int | float) and not isinstance(value, bool)
    return doc


def finished_run() -> RunManifest:
    return RunManifest(
        run_id="20260301T120000Z-00000001",
        pipeline="sales",
        trigger="schedule",
        source="folder",
        destination="lake",
        started_at="2026-03-01T12:00:00.000Z",
        ended_at="2026-03-01T12:00:02.500Z",
        drive={"requests": 7, "retries": 2},
        inputs=[
            InputRecord("1", "a.csv", status="written", rows_out=10, bytes_out=2048),
            InputRecord("2", "b.csv", status="written", rows_out=5, bytes_out=1024),
            InputRecord("3", "bad.csv", status="failed", error="x", quarantine_key="_q/bad.csv"),
            InputRecord("4", "same.csv", status="skipped_unchanged"),
        ],
        notifications=[{"target": "webhook", "ok": False}],
    )


def test_the_aws_line_is_valid_emf_with_every_metric() -> None:
    out = io.StringIO()
    emit_metrics(finished_run(), fmt="emf", stream=out, clock=lambda: NOW)
    [line] = out.getvalue().splitlines()
    doc = check_emf(line)
    assert doc["_aws"]["Timestamp"] == 1_780_000_000_250
    [directive] = doc["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "drivepipe" and directive["Dimensions"] == [["pipeline"]]
    units = {m["Name"]: m["Unit"] for m in directive["Metrics"]}
    assert units["BytesWritten"] == "Bytes" and units["RunDuration"] == "Milliseconds"
    assert doc["pipeline"] == "sales" and doc["run_id"] == "20260301T120000Z-00000001"
    expected = {
        "InputsWritten": 2,
        "InputsFailed": 1,
        "InputsSkippedUnchanged": 1,
        "InputsQuarantined": 1,
        "RowsWritten": 15,
        "BytesWritten": 3072,
        "RunDuration": 2500,
        "DriveRequests": 7,
        "DriveRetries": 2,
        "NotificationsFailed": 1,
    }
    assert {name: doc[name] for name in expected} == expected
    assert doc["InputsRemovalBlocked"] == 0 and "InputsPlanned" not in doc


def test_the_namespace_can_be_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIVEPIPE_METRICS_NAMESPACE", "acme/lake")
    out = io.StringIO()
    emit_metrics(finished_run(), fmt="emf", stream=out, clock=lambda: NOW)
    assert check_emf(out.getvalue())["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "acme/lake"


def test_the_gcp_line_is_structured_json_with_severity() -> None:
    out = io.StringIO()
    emit_metrics(finished_run(), fmt="gcp", stream=out, clock=lambda: NOW)
    [line] = out.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["severity"] in GCP_SEVERITIES and entry["severity"] == "WARNING"  # a failure
    assert entry["event"] == "drivepipe.run_metrics" and entry["message"]
    assert entry["logging.googleapis.com/labels"] == {"pipeline": "sales"}
    assert entry["metrics"]["InputsFailed"] == 1 and entry["metrics"]["RunDuration"] == 2500
    assert entry["time"].startswith("2026-05-28T")
    clean = finished_run()
    clean.inputs = clean.inputs[:2]
    out = io.StringIO()
    emit_metrics(clean, fmt="gcp", stream=out, clock=lambda: NOW)
    assert json.loads(out.getvalue())["severity"] == "INFO"


def test_the_format_follows_the_platform(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_LAMBDA_FUNCTION_NAME", "K_SERVICE", "DRIVEPIPE_METRICS"):
        monkeypatch.delenv(name, raising=False)
    assert metrics_format() == "off"
    monkeypatch.setenv("K_SERVICE", "sync-http")
    assert metrics_format() == "gcp"
    monkeypatch.delenv("K_SERVICE")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "drivepipe-dev")
    assert metrics_format() == "emf"
    monkeypatch.setenv("DRIVEPIPE_METRICS", "off")
    assert metrics_format() == "off"
    monkeypatch.setenv("DRIVEPIPE_METRICS", "statsd")
    with pytest.raises(ConfigError, match="DRIVEPIPE_METRICS"):
        metrics_format()


def test_a_finished_run_on_lambda_prints_one_emf_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DRIVEPIPE_METRICS", raising=False)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "drivepipe-dev")
    finish_run(open_storage(str(tmp_path)), finished_run())
    lines = [line for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert len(lines) == 1
    assert check_emf(lines[0])["InputsFailed"] == 1
