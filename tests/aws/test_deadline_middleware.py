"""The Lambda context's time left reaches the core through Chalice's middleware, for every
kind of handler, without any handler passing it on (see shared.deadline)."""

from __future__ import annotations

from typing import Any

import pytest

from devstack.aws_events import s3_event, s3_put_record, scheduled_event
from shared import deadline
from shared.triggers import service
from tests.aws.conftest import AppLoader


class LambdaContext:
    """The Lambda runtime's context object, with a fixed amount of time left."""

    def __init__(self, remaining_ms: int) -> None:
        self.remaining_ms = remaining_ms
        self.aws_request_id = "req-1"
        self.function_name = "drivepipe-dev-on_upload"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@pytest.mark.parametrize("in_lambda", [True, False])
def test_event_handlers_run_within_the_context_s_deadline(
    app_env: dict[str, str],
    load_app: AppLoader,
    monkeypatch: pytest.MonkeyPatch,
    in_lambda: bool,
) -> None:
    runtime = "drivepipe-dev-on_upload" if in_lambda else None
    module = load_app(AWS_LAMBDA_FUNCTION_NAME=runtime)
    seen: list[tuple[str, float | None]] = []

    def record(name: str) -> Any:
        def call(*_: Any, **__: Any) -> Any:
            found = deadline.current()
            seen.append((name, round(found.remaining()) if found else None))
            return {"outcome": "ignored", "reason": "test"} if name == "upload" else []

        return call

    monkeypatch.setattr(service, "on_object", record("upload"))
    monkeypatch.setattr(service, "on_schedule", record("schedule"))
    upload = s3_event(
        [s3_put_record(app_env["DRIVEPIPE_INPUT_BUCKET"], "in/a.csv", size=3, etag="e1")]
    )
    handlers = module.app.handler_map
    handlers["on_upload"](upload, LambdaContext(840_000))
    handlers["on_schedule"](scheduled_event(), LambdaContext(120_000))
    if in_lambda:
        assert seen == [("upload", 840), ("schedule", 120)]
    else:  # chalice's own local and test contexts: no deadline
        assert seen == [("upload", None), ("schedule", None)]
    assert deadline.current() is None  # the deadline ends with the invocation
