"""drivepipe on AWS Lambda (Chalice): thin adapters from Chalice's objects to shared.triggers.

The stage's environment (generated into ``.chalice/config.json`` from deploy/aws-stages.json)
is checked at import by :class:`shared.triggers.stage.Stage`; serverless-README.md lists it.
Drive push notifications: docs/push.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chalice import Chalice, IAMAuthorizer, Response
from chalice.app import CloudWatchEvent, S3Event, SQSEvent

from shared import log
from shared.triggers import aws, push, routes, service
from shared.triggers.http import Response as CoreResponse
from shared.triggers.stage import Stage

service.configure(base_dir=Path(__file__).parent, default="chalicelib/drivepipe.toml")
log.configure()
app = Chalice(app_name="drivepipe")
# the Lambda context's time left and aws_request_id, for the core and every log line
app.register_middleware(aws.invocation_middleware, "all")
STAGE = Stage.from_env()
INPUT_BUCKET = STAGE.input_bucket
AUTH: dict[str, Any] = {
    "iam": {"authorizer": IAMAuthorizer()},
    "api_key": {"api_key_required": True},
    "none": {},
}[STAGE.http_auth]


def _http(resp: CoreResponse) -> Response:
    return Response(body=resp.body, status_code=resp.status, headers=dict(resp.headers))


@app.route("/sync", methods=["POST"], **AUTH)
def sync_http() -> Response:
    """Run one pipeline's Drive sync; the JSON body names the pipeline and its overrides."""
    return _http(routes.respond(routes.SYNC, body=app.current_request.raw_body))


@app.route("/health", methods=["GET"], **AUTH)
def health() -> Response:
    """Liveness and configuration check."""
    return _http(routes.respond(routes.HEALTH))


@app.route("/runs", methods=["GET"], **AUTH)
def list_runs() -> Response:
    """The run history, newest first: ``?pipeline=&status=&limit=&cursor=``."""
    return _http(routes.respond(routes.RUNS, dict(app.current_request.query_params or {})))


@app.route("/runs/{run_id}", methods=["GET"], **AUTH)
def get_run(run_id: str) -> Response:
    """The manifest of one run (or a fanned-out run's progress)."""
    return _http(routes.respond(routes.RUN, {"run_id": run_id}))


if service.push_enabled():

    @app.route("/drive/notifications", methods=["POST"])  # public: Drive cannot sign requests
    def drive_notifications() -> Response:
        """Drive's push notifications, checked by channel id and token, then handed off."""
        req = app.current_request
        return _http(push.webhook(req.method, req.headers, req.raw_body))


@app.on_s3_event(bucket=INPUT_BUCKET, events=["s3:ObjectCreated:*"])
def on_upload(event: S3Event) -> list[dict[str, Any]]:
    """Every record of the notification (Chalice's ``S3Event`` reads only the first)."""
    return aws.s3_notification(event.to_dict(), trigger="s3")


@app.schedule(service.schedule_expression() or "rate(1 hour)")
def on_schedule(event: CloudWatchEvent) -> list[dict[str, Any]]:
    """Sync every scheduled pipeline (or those named in ``detail.pipelines``)."""
    return aws.scheduled(event.detail, trigger="schedule")


if STAGE.work_queue:
    # batch_size: items per invocation, one bad item is reported alone; maximum_concurrency
    # bounds Drive requests (quota: see README)
    @app.on_sqs_message(
        queue=STAGE.work_queue, batch_size=5, maximum_concurrency=STAGE.max_concurrency
    )
    def fanout_worker(event: SQSEvent) -> dict[str, Any]:
        """Process fan-out work items; failed ones are reported for redelivery."""
        return aws.sqs_work(event.to_dict())


if STAGE.dead_letter_queue:

    @app.on_sqs_message(queue=STAGE.dead_letter_queue, batch_size=10)
    def fanout_dead_letter(event: SQSEvent) -> dict[str, Any]:
        """Work items that exhausted their deliveries: failed in the manifest, with why."""
        return aws.sqs_dead_letters(event.to_dict())


if STAGE.push_queue:

    @app.on_sqs_message(queue=STAGE.push_queue, batch_size=10)
    def push_worker(event: SQSEvent) -> dict[str, Any]:
        """Syncs handed off by notifications: one per burst, never one per message."""
        return aws.sqs_push(event.to_dict())


if STAGE.failure_queue:

    @app.on_sqs_message(queue=STAGE.failure_queue, batch_size=10)
    def failed_events(event: SQSEvent) -> dict[str, Any]:
        """S3/EventBridge invocations Lambda gave up on: recorded in the pipelines' manifests."""
        return aws.sqs_failed_invocations(event.to_dict())
