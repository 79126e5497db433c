"""Cloud Functions (gen2) entry points: thin adapters from GCP requests and events to the core.

Seven functions deploy from this one source directory (see ``deploy/package_gcp.py``):

- ``sync_http``   HTTP: ``POST /sync``, ``GET /runs``, ``GET /runs/<id>``, ``GET /health``.
- ``on_upload``   CloudEvent ``google.cloud.storage.object.v1.finalized`` from the input bucket.
- ``on_schedule`` CloudEvent ``google.cloud.pubsub.topic.v1.messagePublished`` (Cloud Scheduler).
- ``fanout_worker`` CloudEvent from the work topic (``DRIVEPIPE_FANOUT_TOPIC``): one work item.
- ``fanout_dead_letter`` CloudEvent from the work subscription's dead-letter topic.
- ``drive_notifications`` HTTP, public (``--allow-unauthenticated``): Drive's push notifications.
- ``push_worker`` CloudEvent from the push topic (``DRIVEPIPE_PUSH_TOPIC``): one owed sync.

Event functions are deployed with ``--retry``; :mod:`shared.triggers.gcp` logs every failure as
one JSON line, answers 503 for a transient one (``quiet_redelivery``) so Eventarc redelivers,
and acknowledges a permanent one, logged for Error Reporting.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import functions_framework

from shared import log
from shared.triggers import gcp, push, routes, service

if TYPE_CHECKING:
    import flask
    from cloudevents.http import CloudEvent

# The pipelines file travels next to this module in the deployed source.
service.configure(base_dir=Path(__file__).parent, default="drivepipe.toml")
log.configure()
MOUNTS = {"sync_http", "sync-http", "drivepipe-sync", os.environ.get("K_SERVICE", "")}


@functions_framework.http
def sync_http(request: flask.Request) -> tuple[str, int, dict[str, str]]:
    """``POST /sync``; ``GET /runs`` lists runs, ``GET /runs/<id>`` reads one; ``GET /health``."""
    query = request.args.to_dict()
    resp = routes.route(
        request.method, request.path, request.get_data(), mounts=MOUNTS, query=query
    )
    headers = {"Content-Type": "application/json", **resp.headers}
    return json.dumps(resp.body, default=str), resp.status, headers


@functions_framework.cloud_event
@gcp.quiet_redelivery
def on_upload(event: CloudEvent) -> None:
    """A GCS object was finalized: transform it, start a requested sync, or ignore it."""
    gcp.on_finalized(event.get_attributes(), event.data, trigger="gcs")


@functions_framework.cloud_event
@gcp.quiet_redelivery
def on_schedule(event: CloudEvent) -> None:
    """Cloud Scheduler published to the topic: sync the named (or all scheduled) pipelines."""
    gcp.on_scheduler_message(event.get_attributes(), event.data)


@functions_framework.cloud_event
@gcp.quiet_redelivery
def fanout_worker(event: CloudEvent) -> None:
    """One fan-out work item; a failure is raised, so Pub/Sub redelivers (then dead-letters)."""
    gcp.on_work_message(event.get_attributes(), event.data)


@functions_framework.cloud_event
@gcp.quiet_redelivery
def fanout_dead_letter(event: CloudEvent) -> None:
    """A dead-lettered work item: recorded as failed in its run, with the last error."""
    gcp.on_dead_letter_message(event.get_attributes(), event.data)


@functions_framework.http
def drive_notifications(request: flask.Request) -> tuple[str, int, dict[str, str]]:
    """Drive's push notifications, checked by channel id and token, then handed off."""
    resp = push.webhook(
        request.method, request.headers, request.stream.read(push.MAX_BODY_BYTES + 1)
    )
    return json.dumps(resp.body), resp.status, {"Content-Type": "application/json"}


@functions_framework.cloud_event
def push_worker(event: CloudEvent) -> None:
    """A sync handed off by a notification: run it if it is still owed."""
    gcp.on_push_message(event.get_attributes(), event.data)
