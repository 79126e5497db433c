"""Hostile events, HTTP bodies and configs: a clear error and the right status, never a crash."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from devstack.drive_emulator import DriveEmulator
from devstack.servers import MotoServer, free_port
from shared.cli import EXIT_UNREACHABLE, EXIT_USAGE
from shared.cli import main as cli_main
from shared.config import parse_config
from shared.errors import (
    ConfigError,
    DriveError,
    EventError,
    StorageError,
    is_transient,
)
from shared.run import deferred
from shared.run.engine import sync_lease
from shared.run.state import SyncState
from shared.storage import open_storage
from shared.triggers import service
from shared.triggers.events import ObjectEvent, from_gcs_cloudevent, from_s3_event
from tests.reliability.conftest import Deploy

# ---- events ---------------------------------------------------------------------------------

MALFORMED_EVENTS: list[tuple[str, Any, str]] = [
    ("no Records", {}, "missing field 'Records'"),
    ("Records not a list", {"Records": {"a": 1}}, "must be a list"),
    ("wrong source", {"Records": [{"eventSource": "aws:sqs"}]}, "expected 'aws:s3'"),
    (
        "no object",
        {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": {}}]},
        "missing field 'bucket'",
    ),
    (
        "key not a string",
        {
            "Records": [
                {
                    "eventSource": "aws:s3",
                    "eventName": "ObjectCreated:Put",
                    "s3": {"bucket": {"name": "b"}, "object": {"key": 7}},
                }
            ]
        },
        "must be strings",
    ),
]


@pytest.mark.parametrize(
    ("name", "event", "message"), MALFORMED_EVENTS, ids=[m[0] for m in MALFORMED_EVENTS]
)
def test_malformed_s3_events_are_refused_by_name(name: str, event: Any, message: str) -> None:
    with pytest.raises(EventError, match=message):
        from_s3_event(event)


def test_wrong_cloudevent_types_are_refused() -> None:
    with pytest.raises(
        EventError, match=r"expected 'google\.cloud\.storage\.object\.v1\.finalized'"
    ):
        from_gcs_cloudevent({"type": "google.cloud.storage.object.v1.deleted"}, {})
    with pytest.raises(EventError, match="missing field 'name'"):
        from_gcs_cloudevent({"type": "google.cloud.storage.object.v1.finalized"}, {"bucket": "b"})


def test_deletions_carry_no_work() -> None:
    record = {"eventSource": "aws:s3", "eventName": "ObjectRemoved:Delete", "s3": {}}
    assert from_s3_event({"Records": [record]}) == []


HOSTILE_KEYS = [
    ("incoming/../_state/rel.json", "'..'"),
    ("incoming/./a.csv", "'.'"),
    ("/incoming/a.csv", "absolute"),
    ("incoming\\a.csv", "backslash"),
    ("incoming/a\x00.csv", "NUL"),
    ("incoming/" + "a" * 1100 + ".csv", "longer than 1024"),
    ("", "empty key"),
]


@pytest.mark.parametrize(("key", "reason"), HOSTILE_KEYS, ids=[r for _, r in HOSTILE_KEYS])
def test_hostile_event_keys_are_ignored_with_a_reason(
    key: str, reason: str, deploy: Deploy, tmp_path: Path
) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    deploy(
        {
            "pipelines": {
                "rel": {
                    "source": {"incoming_url": "s3://bkt/incoming/"},
                    "output": {"url": str(tmp_path / "out")},
                }
            }
        }
    )
    result = service.on_object(ObjectEvent("s3", "bkt", key, "v1"), trigger="test")
    assert result["outcome"] == "ignored"
    assert reason in result["reason"]
    assert not (tmp_path / "out").exists()  # nothing was claimed or written


def test_unicode_keys_are_processed(
    moto_server: MotoServer, s3_bucket: str, deploy: Deploy
) -> None:
    key = "incoming/données/ünï ☃ +%.csv"
    body = b"id,amount\n1,2\n"
    moto_server.client().put_object(Bucket=s3_bucket, Key=key, Body=body)
    deploy(
        {
            "pipelines": {
                "rel": {
                    "source": {"incoming_url": f"s3://{s3_bucket}/incoming/"},
                    "output": {"url": f"s3://{s3_bucket}/out", "format": "csv"},
                }
            }
        }
    )
    result = service.on_object(ObjectEvent("s3", s3_bucket, key, "e1"), trigger="test")
    assert result["outcome"] == "transformed", result
    out_key = "out/rel/données__ünï ☃ +%.csv"  # the table rel, the path in one name
    out = moto_server.client().get_object(Bucket=s3_bucket, Key=out_key)
    assert out["Body"].read().splitlines()[1].endswith(b",1,2")


def test_own_outputs_and_bookkeeping_never_trigger_work(deploy: Deploy, tmp_path: Path) -> None:
    deploy(
        {
            "pipelines": {
                "rel": {
                    "source": {"incoming_url": "s3://bkt/incoming/"},
                    "output": {"url": "s3://bkt/incoming/out"},
                }
            }
        }
    )
    own = service.on_object(ObjectEvent("s3", "bkt", "incoming/out/a.csv", "1"), trigger="t")
    books = service.on_object(ObjectEvent("s3", "bkt", "incoming/_locks/x.json", "1"), trigger="t")
    assert own["outcome"] == books["outcome"] == "ignored"


# ---- HTTP bodies ----------------------------------------------------------------------------

BODIES: list[tuple[str, bytes | None, int, str]] = [
    ("empty", b"", 400, "empty_body"),
    ("invalid JSON", b"{pipeline: rel", 400, "invalid_json"),
    ("not an object", b'["rel"]', 400, "invalid_body"),
    ("not UTF-8", b'{"pipeline": "\xff"}', 400, "invalid_json"),
    ("wrong type", b'{"pipeline": "rel", "full_refresh": "yes"}', 400, "invalid_field"),
    ("unknown field", b'{"pipeline": "rel", "rm": "-rf"}', 400, "invalid_field"),
    ("bad pipeline name", b'{"pipeline": "../etc"}', 400, "invalid_field"),
    ("bad folder id", b'{"pipeline": "rel", "folder_id": "a b/c"}', 400, "invalid_field"),
    ("huge body", b'{"pipeline": "' + b"a" * 70_000 + b'"}', 413, "body_too_large"),
    ("unknown pipeline", b'{"pipeline": "nope"}', 404, "unknown_pipeline"),
    (
        "override not allowed",
        b'{"pipeline": "rel", "full_refresh": true}',
        400,
        "override_not_allowed",
    ),
    (
        "force_removals not allowed",
        b'{"pipeline": "rel", "force_removals": true}',
        400,
        "override_not_allowed",
    ),
]


@pytest.mark.parametrize(("name", "body", "status", "code"), BODIES, ids=[b[0] for b in BODIES])
def test_bad_http_bodies_get_a_clear_status(
    name: str, body: bytes, status: int, code: str, deploy: Deploy, tmp_path: Path
) -> None:
    pipeline = {
        "source": {"folder_id": "abc"},
        "allow_overrides": ["dry_run"],
        "output": {"url": str(tmp_path / "out")},
    }
    deploy({"pipelines": {"rel": pipeline}})
    response = service.http_sync(body)
    assert response.status == status, response.body
    assert response.body["error"]["code"] == code
    assert response.body["error"]["message"]
    json.dumps(response.body)  # always serializable


# ---- configs --------------------------------------------------------------------------------

CONFIGS: list[tuple[str, dict[str, Any], str]] = [
    ("unknown key", {"pipelines": {"p": {"output": {"url": "/x"}, "ouput": 1}}}, "ouput"),
    (
        "wrong type",
        {"pipelines": {"p": {"output": {"url": "/x"}, "concurrency": "many"}}},
        "concurrency",
    ),
    (
        "out of range",
        {"pipelines": {"p": {"output": {"url": "/x"}, "concurrency": 1000}}},
        "concurrency",
    ),
    ("bad scheme", {"pipelines": {"p": {"output": {"url": "ftp://h/x"}}}}, "url"),
    ("no bucket", {"pipelines": {"p": {"output": {"url": "s3:///x"}}}}, "bucket"),
    ("bad format", {"pipelines": {"p": {"output": {"url": "/x", "format": "xls"}}}}, "format"),
    ("bad step", {"pipelines": {"p": {"output": {"url": "/x"}, "steps": [{"op": "rm"}]}}}, "rm"),
]


@pytest.mark.parametrize(("name", "data", "names"), CONFIGS, ids=[c[0] for c in CONFIGS])
def test_bad_configs_name_the_problem(name: str, data: dict[str, Any], names: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(data)
    assert names in str(error.value)


def test_missing_bucket_is_unreachable_exit_3_and_http_503(
    moto_server: MotoServer,
    s3_env: dict[str, str],
    emulator: DriveEmulator,
    drive_root: Path,
    tmp_path: Path,
    deploy: Deploy,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (drive_root / "a.csv").write_text("id,amount\n1,2\n")
    body = {
        "source": {"folder_id": emulator.root_id},
        "output": {"url": "s3://no-such-bucket-dp/x"},
    }
    config = deploy({"pipelines": {"rel": body}})
    code = cli_main(["sync", "--config", str(config), "--pipeline", "rel"])
    assert code == EXIT_UNREACHABLE
    assert "no-such-bucket-dp" in capsys.readouterr().err
    response = service.http_sync(b'{"pipeline": "rel"}')
    assert response.status == 503 and "no-such-bucket-dp" in response.body["error"]["message"]


def test_refusing_endpoint_is_unreachable_exit_3(
    emulator: DriveEmulator,
    drive_root: Path,
    deploy: Deploy,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (drive_root / "a.csv").write_text("id,amount\n1,2\n")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    body = {"source": {"folder_id": emulator.root_id}, "output": {"url": "s3://bucket-dp/x"}}
    config = deploy({"pipelines": {"rel": body}})
    assert cli_main(["sync", "--config", str(config), "--pipeline", "rel"]) == EXIT_UNREACHABLE
    assert "drivepipe:" in capsys.readouterr().err


def test_invalid_config_file_is_usage_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[pipelines.p]\noutput = { url = "/x" }\ncolour = "blue"\n')
    assert cli_main(["sync", "--config", str(config)]) == EXIT_USAGE
    assert "colour" in capsys.readouterr().err


# ---- Drive refusing the folder ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("configured", "requested", "status", "code", "field"),
    [
        ("missing", None, 404, "drive_not_found", None),
        ("root", "1NoSuchFolder", 404, "drive_not_found", "folder_id"),
        ("root", "a-file", 400, "invalid_field", "folder_id"),
    ],
    ids=["configured folder missing", "requested folder missing", "requested id is a file"],
)
def test_a_folder_drive_refuses_is_a_4xx_naming_it_not_retry_later(
    configured: str,
    requested: str | None,
    status: int,
    code: str,
    field: str | None,
    emulator: DriveEmulator,
    drive_root: Path,
    tmp_path: Path,
    deploy: Deploy,
) -> None:
    (drive_root / "a.csv").write_text("id,amount\n1,2\n")
    file_id = emulator.id_for("a.csv")
    folder = emulator.root_id if configured == "root" else "1GoneFolder"
    pipeline = {
        "source": {"folder_id": folder},
        "allow_overrides": ["folder_id"],
        "output": {"url": str(tmp_path / "out")},
    }
    deploy({"pipelines": {"rel": pipeline}})
    body: dict[str, Any] = {"pipeline": "rel"}
    if requested:
        body["folder_id"] = file_id if requested == "a-file" else requested
    response = service.http_sync(json.dumps(body).encode())
    assert response.status == status, response.body
    assert response.body["error"]["code"] == code
    assert response.body["error"].get("field") == field
    wanted = body.get("folder_id", folder)
    assert wanted in response.body["error"]["message"]


def test_a_request_file_for_a_missing_folder_is_reported_not_redelivered(
    moto_server: MotoServer,
    s3_bucket: str,
    emulator: DriveEmulator,
    tmp_path: Path,
    deploy: Deploy,
) -> None:
    deploy(
        {
            "settings": {"requests_url": f"s3://{s3_bucket}/requests/"},
            "pipelines": {
                "rel": {
                    "source": {"folder_id": "1GoneFolder"},
                    "output": {"url": str(tmp_path / "out")},
                }
            },
        }
    )
    moto_server.client().put_object(
        Bucket=s3_bucket, Key="requests/r.json", Body=b'{"pipeline": "rel"}'
    )
    event = ObjectEvent("s3", s3_bucket, "requests/r.json", "v1")
    with pytest.raises(DriveError) as raised:
        service.on_object(event, trigger="s3")
    assert raised.value.status == 404
    assert not is_transient(raised.value)  # handlers report and acknowledge it


def _request_file(
    moto_server: MotoServer, s3_bucket: str, emulator: DriveEmulator, out: Path, deploy: Deploy
) -> ObjectEvent:
    deploy(
        {
            "settings": {"requests_url": f"s3://{s3_bucket}/requests/"},
            "pipelines": {
                "rel": {"source": {"folder_id": emulator.root_id}, "output": {"url": str(out)}}
            },
        }
    )
    moto_server.client().put_object(
        Bucket=s3_bucket, Key="requests/r.json", Body=b'{"pipeline": "rel"}'
    )
    return ObjectEvent("s3", s3_bucket, "requests/r.json", "v1")


def test_a_request_file_whose_state_cannot_be_read_is_a_storage_error(
    moto_server: MotoServer,
    s3_bucket: str,
    emulator: DriveEmulator,
    tmp_path: Path,
    deploy: Deploy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Not re-wrapped: StorageError itself is transient, and keeps the context it adds."""
    event = _request_file(moto_server, s3_bucket, emulator, tmp_path / "out", deploy)

    def unreadable(*args: Any, **kwargs: Any) -> Any:
        raise StorageError("read timed out")

    monkeypatch.setattr(SyncState, "load", unreadable)
    with pytest.raises(StorageError, match=r"cannot read state from .*: read timed out") as raised:
        service.on_object(event, trigger="s3")
    assert type(raised.value) is StorageError and is_transient(raised.value)


def test_a_request_file_while_a_sync_runs_is_deferred_and_runs_after_it(
    moto_server: MotoServer, s3_bucket: str, emulator: DriveEmulator, tmp_path: Path, deploy: Deploy
) -> None:
    """Not retried until the platform gives up (Lambda: ~3 min): kept, then run at the end of
    the next sync of the pipeline, once; a redelivery of the event is a duplicate."""
    event = _request_file(moto_server, s3_bucket, emulator, tmp_path / "out", deploy)
    dest = open_storage(str(tmp_path / "out"))
    running = sync_lease(dest, "rel", "other-run")
    running.acquire()
    outcome = service.on_object(event, trigger="s3")
    assert outcome["outcome"] == "deferred", outcome
    assert "held by run other-run" in outcome["reason"]
    (waiting,) = deferred.pending(dest, "rel")
    assert (waiting.url, waiting.blocked_by, waiting.body) == (
        event.url,
        "other-run",
        {"pipeline": "rel"},
    )
    # While the lease is held, a schedule tick's end runs nothing: the request keeps waiting.
    assert service.on_schedule(["rel"], trigger="schedule")[0]["skipped"]
    assert len(deferred.pending(dest, "rel")) == 1
    running.release()
    # A sync that ends runs what waited, after itself.
    assert service.http_sync(b'{"pipeline": "rel"}').status == 200
    assert deferred.pending(dest, "rel") == []
    manifests = [json.loads(dest.read(i.key)) for i in dest.list("_runs/") if i.key.count("/") == 1]
    by_trigger = {m["trigger"]: m for m in manifests}
    assert set(by_trigger) == {"http", "s3:request"}, manifests
    assert by_trigger["s3:request"]["started_at"] >= by_trigger["http"]["ended_at"]
    assert service.on_object(event, trigger="s3")["outcome"] == "duplicate"


def test_an_unknown_pipeline_lists_the_configured_ones(deploy: Deploy, tmp_path: Path) -> None:
    out = {"output": {"url": str(tmp_path / "out")}}
    deploy({"pipelines": {"sales": out, "stock": out}})
    response = service.http_sync(b'{"pipeline": "sale"}')
    assert response.status == 404
    assert "configured: sales, stock" in response.body["error"]["message"]


def test_a_storage_failure_while_reading_progress_is_503_not_a_crash(
    deploy: Deploy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GET /runs/<id>: no manifest yet, and listing the run's results fails (unit test: the
    real local storage, with its ``list`` made to fail)."""
    out = tmp_path / "out"
    deploy({"pipelines": {"rel": {"output": {"url": str(out)}}}})
    run_id = "20260101T000000Z-abcdef12"
    plan = {"run_id": run_id, "inputs": [], "item_ids": ["i00000"]}
    (out / "_runs" / run_id).mkdir(parents=True)
    (out / "_runs" / run_id / "plan.json").write_text(json.dumps(plan))
    real_open = service.open_storage

    def failing_list(url: str) -> Any:
        storage = real_open(url)

        def refuse(prefix: str = "") -> Any:
            raise StorageError(f"cannot list {prefix}: connection reset")

        storage.list = refuse  # type: ignore[method-assign]
        return storage

    monkeypatch.setattr(service, "open_storage", failing_list)
    response = service.http_get_run(run_id)
    assert response.status == 503, response.body
    assert "connection reset" in response.body["error"]["message"]
    assert service.http_get_run(run_id, pipeline="nope").status == 404  # unknown pipeline
