"""Drive push notifications on the local stacks (``drivepipe dev aws`` / ``dev gcp``).

What a deployment configures by hand, made locally: the push queue (SQS on moto_server) or
topic (Pub/Sub stand-in), the secret store for channel tokens (Secrets Manager on moto, the
Secret Manager stand-in), the webhook's address (``chalice local`` or the
``drive_notifications`` function) and ``DRIVEPIPE_PUSH=true``, which turns on ``push`` and the
changes feed in the shipped pipeline files. :func:`open_channels` opens each push pipeline's
channel to the local webhook once it serves (a deployment leaves that to ``drivepipe watch
start`` or the first scheduled tick); :func:`close_channels` stops them when the stack stops.
"""

from __future__ import annotations

from typing import Any

from devstack.sqs_pump import create_work_queues

PUSH_ENV = "DRIVEPIPE_PUSH"
AWS_PUSH_QUEUE = "drivepipe-push-local"
NOTIFICATIONS_PATH = "/drive/notifications"


def aws_push_env(sqs: Any, webhook_base: str, *, queue: str = AWS_PUSH_QUEUE) -> dict[str, str]:
    """Create the push queue (and its DLQ) on moto; the env that turns push on for the app."""
    create_work_queues(sqs, queue, max_receive_count=5, visibility_timeout=120)
    return {
        PUSH_ENV: "true",
        "DRIVEPIPE_PUSH_QUEUE": queue,
        "DRIVEPIPE_CHANNEL_SECRETS": "aws-sm:drivepipe/local/channels",
        "DRIVEPIPE_PUSH_ADDRESS": webhook_base.rstrip("/") + NOTIFICATIONS_PATH,
    }


def gcp_push_env(
    *, webhook_url: str, pubsub_host: str, secrets_host: str, project: str, topic: str
) -> dict[str, str]:
    """The env that turns push on for the functions (stand-ins for Pub/Sub and Secret Manager)."""
    return {
        PUSH_ENV: "true",
        "DRIVEPIPE_PUSH_TOPIC": f"projects/{project}/topics/{topic}",
        "PUBSUB_EMULATOR_HOST": pubsub_host,
        "SECRET_MANAGER_EMULATOR_HOST": secrets_host,
        "DRIVEPIPE_CHANNEL_SECRETS": f"gcp-sm:projects/{project}",
        "DRIVEPIPE_PUSH_ADDRESS": webhook_url,
    }


def open_channels(config_path: str) -> list[str]:
    """Open (or keep) every push pipeline's channel; one line each for the terminal."""
    from shared.config import load_config
    from shared.drive import DriveClient
    from shared.run import channels
    from shared.storage import open_storage

    lines = []
    for pipeline in load_config(config_path).pipelines.values():
        if pipeline.push:
            watcher = channels.Watcher(
                pipeline, open_storage(pipeline.output.url), drive=DriveClient.from_env()
            )
            outcome = channels.start(watcher)
            where = outcome.channel or {}
            lines.append(
                f"{pipeline.name}: channel {outcome.action} {where.get('id', '')} -> "
                f"{where.get('address', '')}"
            )
    return lines


def describe_channels(config_path: str) -> list[str]:
    """One line per push pipeline: its open channel and where it delivers."""
    from shared.cli_watch import status
    from shared.config import load_config
    from shared.storage import open_storage

    lines = []
    for pipeline in load_config(config_path).pipelines.values():
        if pipeline.push:
            report = status(pipeline, open_storage(pipeline.output.url))
            channel = report["channel"]
            lines.append(
                f"{pipeline.name}: channel {channel['id']} -> {channel['address']} "
                f"(expires {channel['expires_at']})"
                if channel
                else f"{pipeline.name}: no channel open"
            )
    return lines


def close_channels(config_path: str) -> list[str]:
    """Stop every push pipeline's channels (the stack is going away); one line each."""
    from shared.config import load_config
    from shared.drive import DriveClient
    from shared.run import channels
    from shared.storage import open_storage

    lines = []
    for pipeline in load_config(config_path).pipelines.values():
        if pipeline.push:
            watcher = channels.Watcher(
                pipeline, open_storage(pipeline.output.url), drive=DriveClient.from_env()
            )
            outcome = channels.stop(watcher)
            lines.append(f"{pipeline.name}: {outcome.action} ({outcome.reason})")
    return lines
