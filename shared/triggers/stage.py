"""A Lambda stage's trigger settings, read from its environment once, at import.

Reading them at import makes a bad stage fail its cold start with a clear message, instead of
failing (or worse, serving an open API) on the first request. The handler module maps the
auth mode to its framework's route options; everything else about the settings is here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args

from shared.errors import InsecureConfigError, StageConfigError
from shared.run.fanout.queues import DLQ_ENV, QUEUE_ENV
from shared.triggers.events import queue_name

AUTH_ENV = "DRIVEPIPE_HTTP_AUTH"
PUBLIC_ENV = "DRIVEPIPE_PUBLIC"
INPUT_BUCKET_ENV = "DRIVEPIPE_INPUT_BUCKET"
MAX_CONCURRENCY_ENV = "DRIVEPIPE_FANOUT_MAX_CONCURRENCY"
PUSH_QUEUE_ENV = "DRIVEPIPE_PUSH_QUEUE"  # the push worker's SQS queue (docs/push.md)
# On-failure destination of the asynchronous invocations (S3, EventBridge): an SQS queue whose
# consumer records each failed event in a manifest (shared.triggers.failed).
FAILURE_QUEUE_ENV = "DRIVEPIPE_FAILURE_QUEUE"
AuthMode = Literal["iam", "api_key", "none"]
AUTH_MODES: tuple[AuthMode, ...] = get_args(AuthMode)


def http_auth(mode: str | None, public: str | None) -> AuthMode:
    """The HTTP API's auth mode: ``none`` only if the stage also says ``DRIVEPIPE_PUBLIC=true``."""
    chosen = (mode or "none").strip().lower()
    if chosen == "iam":
        return "iam"
    if chosen == "api_key":
        return "api_key"
    if chosen != "none":
        raise InsecureConfigError(f"{AUTH_ENV}={mode!r} is not one of {', '.join(AUTH_MODES)}")
    if (public or "").strip().lower() != "true":
        raise InsecureConfigError(
            f"refusing to serve the HTTP API without authentication: set {AUTH_ENV} "
            "to 'iam' or 'api_key' in the stage's environment_variables, or set "
            f"{PUBLIC_ENV}=true to make an open API explicit"
        )
    return "none"


@dataclass(frozen=True)
class Stage:
    """What the stage's environment says about its triggers (queues by name, not URL)."""

    http_auth: AuthMode
    input_bucket: str
    work_queue: str | None = None
    dead_letter_queue: str | None = None
    failure_queue: str | None = None
    max_concurrency: int = 5  # bounds concurrent Drive requests (quota: see README)
    push_queue: str | None = None  # notifications hand their syncs to this queue

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Stage:
        """Check and read the stage: :class:`StageConfigError` if a setting is missing or unsafe."""
        auth = http_auth(environ.get(AUTH_ENV), environ.get(PUBLIC_ENV))
        bucket = environ.get(INPUT_BUCKET_ENV, "").strip()
        if not bucket:
            raise StageConfigError(
                f"{INPUT_BUCKET_ENV} is not set: name the bucket whose uploads trigger "
                "on_upload in the stage's environment_variables (.chalice/config.json)"
            )
        queue = environ.get(QUEUE_ENV, "").strip()
        dlq = environ.get(DLQ_ENV, "").strip()
        push = environ.get(PUSH_QUEUE_ENV, "").strip()
        failed = environ.get(FAILURE_QUEUE_ENV, "").strip()
        return cls(
            http_auth=auth,
            input_bucket=bucket,
            work_queue=queue_name(queue) if queue else None,
            dead_letter_queue=queue_name(dlq) if dlq else None,
            failure_queue=queue_name(failed) if failed else None,
            max_concurrency=int(environ.get(MAX_CONCURRENCY_ENV) or 5),
            push_queue=queue_name(push) if push else None,
        )
