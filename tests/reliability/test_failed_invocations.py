"""No silent loss of asynchronous invocations: what Lambda's on-failure destination receives is
recorded in the manifests of the pipelines it concerned, once; Chalice's middleware puts the
invocation's request id on every log line and reshapes Chalice's own errors.

The recording through the deployed artifacts, under the consumer's own IAM policy, is in
tests/aws/test_enforced_permissions.py; these check the rules on a local destination.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from devstack.servers import MotoServer
from devstack.webhook_receiver import WebhookReceiver
from shared import log as logs
from shared.errors import EventError, StorageError
from shared.run import deferred
from shared.run.history import list_runs
from shared.storage import open_storage
from shared.triggers import aws
from shared.triggers.failed import failed_invocation, record
from tests.reliability.conftest import Deploy

ARN = "arn:aws:lambda:eu-west-1:123456789012:function:drivepipe-dev-on_upload"


def destination_record(payload: dict[str, Any], request_id: str = "req-1") -> str:
    return json.dumps(
        {
            "version": "1.0",
            "timestamp": "2026-03-04T05:06:07.890Z",
            "requestContext": {
                "requestId": request_id,
                "functionArn": f"{ARN}:$LATEST",
                "condition": "RetriesExhausted",
                "approximateInvokeCount": 3,
            },
            "requestPayload": payload,
            "responseContext": {"statusCode": 200, "functionError": "Unhandled"},
            "responsePayload": {"errorType": "KeyError", "errorMessage": "'bug'"},
        }
    )


def s3_payload(bucket: str, *keys: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": bucket}, "object": {"key": k, "eTag": "e", "size": 3}},
            }
            for k in keys
        ]
    }


@pytest.fixture
def pipelines(deploy: Deploy, tmp_path: Path) -> dict[str, Path]:
    out = {"sales": tmp_path / "sales-out", "stock": tmp_path / "stock-out"}
    deploy(
        {
            "settings": {"requests_url": "s3://in/requests/"},
            "pipelines": {
                name: {
                    "scheduled": name == "sales",
                    "source": {"folder_id": "f", "incoming_url": f"s3://in/incoming/{name}/"},
                    "output": {"url": str(path)},
                }
                for name, path in out.items()
            },
        }
    )
    return out


def manifests(root: Path) -> list[dict[str, Any]]:
    store = open_storage(str(root))
    return [json.loads(store.read(i.key)) for i in store.list("_runs/") if i.key.count("/") == 1]


def test_a_failed_upload_is_a_failed_input_in_its_pipeline_s_manifest(
    pipelines: dict[str, Path],
) -> None:
    body = destination_record(s3_payload("in", "incoming/sales/q+1.csv", "incoming/stock/s.csv"))
    result = record(failed_invocation(body))
    assert result["outcome"] == "recorded" and result["pipelines"] == ["sales", "stock"]
    (sales,) = manifests(pipelines["sales"])
    assert sales["trigger"] == "s3:failed" and sales["run_id"].startswith("20260304T050607Z-")
    (failed,) = sales["inputs"]
    assert (failed["path"], failed["status"]) == ("q 1.csv", "failed")
    assert (
        "drivepipe-dev-on_upload failed 3 time(s) (RetriesExhausted): KeyError" in failed["error"]
    )
    assert "req-1" in failed["error"]
    # A redelivered record rewrites the same manifest: recorded once.
    record(failed_invocation(body))
    assert len(manifests(pipelines["sales"])) == 1


def test_a_failed_upload_is_notified_and_listed_as_a_failed_run(
    deploy: Deploy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The record finishes its manifest like any run: the pipeline's webhook hears about the
    failed input, and ``runs list --status failed`` (the history index) finds the run."""
    out = tmp_path / "sales-out"
    with WebhookReceiver() as hook:
        monkeypatch.setenv("REL_WEBHOOK", hook.url)
        monkeypatch.setenv("DRIVEPIPE_NOTIFY_BACKOFF_SECONDS", "0")
        deploy(
            {
                "settings": {
                    "notify": {"webhook_url_env": "REL_WEBHOOK", "webhook_format": "json"}
                },
                "pipelines": {
                    "sales": {
                        "source": {"folder_id": "f", "incoming_url": "s3://in/incoming/sales/"},
                        "output": {"url": str(out)},
                    }
                },
            }
        )
        body = destination_record(s3_payload("in", "incoming/sales/lost.csv"), "req-7")
        result = record(failed_invocation(body))
        (event,) = hook.accepted
    assert event["run_id"] == result["run_id"] and event["trigger"] == "s3:failed"
    assert [f["path"] for f in event["failed"]] == ["lost.csv"]
    (sales,) = manifests(out)
    assert [(n["target"], n["ok"]) for n in sales["notifications"]] == [("webhook", True)]
    page = list_runs(open_storage(str(out)), status="failed")
    assert [r["run_id"] for r in page.runs] == [result["run_id"]]


def test_a_failed_schedule_tick_is_noted_in_each_scheduled_pipeline(
    pipelines: dict[str, Path],
) -> None:
    tick = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}
    assert record(failed_invocation(destination_record(tick)))["pipelines"] == ["sales"]
    (sales,) = manifests(pipelines["sales"])
    assert sales["trigger"] == "schedule:failed" and "KeyError" in sales["notes"][0]
    assert manifests(pipelines["stock"]) == []
    named = dict(tick, detail={"pipelines": ["stock"]})
    assert record(failed_invocation(destination_record(named, "req-2")))["pipelines"] == ["stock"]


def test_an_event_no_pipeline_takes_is_logged_whole(
    pipelines: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    logger = logging.getLogger("drivepipe.failed")
    logger.addHandler(caplog.handler)
    try:
        result = record(failed_invocation(destination_record(s3_payload("in", "elsewhere/x.csv"))))
    finally:
        logger.removeHandler(caplog.handler)
    assert result["outcome"] == "logged"
    lines = [r for r in caplog.records if "only record" in r.getMessage()]
    assert lines and all("elsewhere/x.csv" in line.payload for line in lines)


def test_the_consumer_retries_what_it_could_not_write_and_drops_non_records(
    pipelines: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    good = destination_record(s3_payload("in", "incoming/sales/a.csv"))
    event = {
        "Records": [
            {"messageId": "m1", "body": good},
            {"messageId": "m2", "body": "not json"},
        ]
    }
    assert aws.sqs_failed_invocations(event) == {"batchItemFailures": []}
    with pytest.raises(EventError):
        failed_invocation("{}")

    def unwritable(*args: Any) -> None:
        raise StorageError("destination unreachable")

    monkeypatch.setattr("shared.triggers.failed.finish_run", unwritable)  # redeliver it
    again = destination_record(s3_payload("in", "incoming/sales/b.csv"), "req-9")
    answer = aws.sqs_failed_invocations({"Records": [{"messageId": "m3", "body": again}]})
    assert answer == {"batchItemFailures": [{"itemIdentifier": "m3"}]}


class FakeResponse:
    def __init__(self, body: Any, status_code: int = 200) -> None:
        self.body, self.status_code = body, status_code


def test_the_middleware_tags_log_lines_and_reshapes_chalice_errors(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRIVEPIPE_LOG_FORMAT", "json")
    logs.configure()
    request = SimpleNamespace(lambda_context=SimpleNamespace(aws_request_id="abc-123"))

    def view(event: Any) -> FakeResponse:
        logs.get_logger("test").info("inside")
        return FakeResponse(
            {"Code": "UnsupportedMediaType", "Message": "Unsupported media type: text/plain"}, 415
        )

    response = aws.invocation_middleware(request, view)
    assert response.body == {
        "error": {"code": "unsupported_media_type", "message": "Unsupported media type: text/plain"}
    }
    method = aws.framework_error(
        FakeResponse({"Code": "MethodNotAllowedError", "Message": "m"}, 405)
    )
    assert method.body["error"]["code"] == "method_not_allowed"
    ours = FakeResponse({"error": {"code": "x", "message": "y"}}, 400)
    assert aws.framework_error(ours).body == {"error": {"code": "x", "message": "y"}}
    logs.get_logger("test").info("outside")
    lines = [
        json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")
    ]
    by_message = {line["message"]: line for line in lines}
    assert by_message["inside"]["aws_request_id"] == "abc-123"
    assert "aws_request_id" not in by_message["outside"]


def test_an_unexpected_error_in_a_schedule_tick_fails_the_invocation(
    pipelines: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug or a module missing from the package is not acknowledged as ``outcome: error``:
    the invocation fails, Lambda retries it, then the failure queue records it."""
    from shared.triggers import service

    def crash(request: Any) -> Any:
        raise ModuleNotFoundError("No module named 'openpyxl'")

    monkeypatch.setattr(service, "run_or_fan_out", crash)
    with pytest.raises(ModuleNotFoundError):
        aws.scheduled({}, trigger="schedule")


def test_a_failed_request_file_is_deferred_not_lost(
    deploy: Deploy, tmp_path: Path, s3_bucket: str, moto_server: MotoServer
) -> None:
    out = tmp_path / "out"
    deploy(
        {
            "settings": {"requests_url": f"s3://{s3_bucket}/requests/"},
            "pipelines": {"rel": {"source": {"folder_id": "f"}, "output": {"url": str(out)}}},
        }
    )
    moto_server.client().put_object(
        Bucket=s3_bucket, Key="requests/r.json", Body=b'{"pipeline": "rel"}'
    )
    payload = s3_payload(s3_bucket, "requests/r.json")
    assert record(failed_invocation(destination_record(payload)))["pipelines"] == ["rel"]
    (waiting,) = deferred.pending(open_storage(str(out)), "rel")
    assert (waiting.url, waiting.body) == (f"s3://{s3_bucket}/requests/r.json", {"pipeline": "rel"})
    (manifest,) = manifests(out)
    assert "deferred: it runs when the next sync of the pipeline ends" in manifest["notes"][1]
