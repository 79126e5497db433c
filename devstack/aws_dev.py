"""The Chalice app on the local stack, with the S3 and schedule events ``chalice local`` lacks.

``python -m devstack.aws_dev`` (``drivepipe dev aws``):

1. starts ``moto_server`` (unless ``--s3-endpoint``) and the Drive emulator on the sample
   folder (unless ``--drive-url``), and creates the input and output buckets;
2. runs ``chalice local --stage local`` on a free port for the HTTP API;
3. polls the input bucket every ``--poll-interval`` seconds and delivers each new object
   (new key, or same key with a new ETag) to ``on_upload`` as a real S3 notification;
4. fires an EventBridge ``Scheduled Event`` at ``on_schedule`` every ``--schedule-every``
   seconds, on ``SIGUSR1``, or when you type ``s`` + Enter;
5. when a pipeline has a ``fanout`` table (or ``--fanout-queue`` / ``DRIVEPIPE_FANOUT_QUEUE``
   names a queue), creates the SQS work queue and its ``-dlq`` on moto and pumps them into
   ``fanout_worker`` and ``fanout_dead_letter`` (:class:`devstack.sqs_pump.SqsEventSources`),
   so a fanned-out sync finishes and writes its manifest;
6. unless ``--no-push`` (or ``--no-http``), turns on Drive push notifications
   (``DRIVEPIPE_PUSH=true``, :mod:`devstack.push_dev`): the push queue on moto, pumped into
   ``push_worker``, channel tokens in moto's Secrets Manager, and a channel from the Drive
   emulator to ``chalice local``'s ``POST /drive/notifications``. Edit, add or delete a file in
   the emulator's folder and the lake follows within seconds, with no schedule and no command.
7. creates an SNS topic on moto for run notifications (``DRIVEPIPE_NOTIFY_SNS_TOPIC``, unless
   already set) with an SQS queue subscribed, and prints each notification as it arrives
   (the malformed sample ``broken/bad.csv`` causes one on the first sync).

Each invocation prints one line. Upload with ``aws --endpoint-url URL s3 cp file.csv
s3://BUCKET/incoming/sales/`` (or boto3) and the output lands in the output bucket.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from devstack.aws_events import s3_event, s3_put_record, scheduled_event
from devstack.notify_local import SnsInbox, print_notification
from devstack.sqs_pump import (
    Invoke,
    QueueMissing,
    SqsEventSources,
    chalice_invoker,
    create_fanout_queues,
)
from shared.config import CONFIG_ENV, PipelineFile, load_config
from shared.errors import ConfigError
from shared.run.fanout.options import FanoutOptions
from shared.run.fanout.queues import QUEUE_ENV
from shared.triggers.events import queue_name

REPO_ROOT = Path(__file__).resolve().parent.parent
APP_DIR = REPO_ROOT / "chalice_app"
SAMPLE_DRIVE = Path(__file__).resolve().parent / "samples" / "drive"
LOCAL_STAGE = "local"
SHIPPED_CONFIG = "chalicelib/drivepipe.toml"  # the app's default, relative to chalice_app/
LOCAL_WORK_QUEUE = "drivepipe-work-local"
NOTIFY_TOPIC_ENV = "DRIVEPIPE_NOTIFY_SNS_TOPIC"  # what chalicelib/drivepipe.toml reads


@dataclass(frozen=True)
class Invocation:
    """One delivered event and what the handler returned (or raised)."""

    function: str
    subject: str
    result: Any
    error: str | None
    seconds: float

    def line(self) -> str:
        """One line for the terminal."""
        stamp = datetime.now().strftime("%H:%M:%S")
        if self.error:
            return f"{stamp} {self.function} {self.subject} -> ERROR {self.error}"
        return f"{stamp} {self.function} {self.subject} -> {summarize(self.result)} " + (
            f"({self.seconds:.2f}s)"
        )


def summarize(result: Any) -> str:
    """A short description of a handler's return value."""
    if isinstance(result, dict) and "batchItemFailures" in result:
        failed = len(result["batchItemFailures"] or [])
        return f"{failed} failed, back to the queue" if failed else "all done"
    if not isinstance(result, list):
        return json.dumps(result, default=str)[:200]
    parts = []
    for item in result:
        if not isinstance(item, dict):
            parts.append(str(item))
        elif "outcome" in item:
            summary = item.get("summary") or {}
            counts = summary.get("counts") or {}
            extra = f" written={counts.get('written')}" if counts else ""
            reason = f" ({item['reason']})" if item.get("reason") else ""
            parts.append(f"{item['outcome']}{extra}{reason}")
        elif (item.get("summary") or {}).get("status") == "accepted":
            started = item["summary"]
            parts.append(
                f"{item.get('pipeline')}: fanned out run {started.get('run_id')} "
                f"({started.get('items')} items)"
            )
        else:
            counts = (item.get("summary") or {}).get("counts") or {}
            shown = " ".join(f"{name}={n}" for name, n in counts.items() if n) or "no changes"
            parts.append(f"{item.get('pipeline')}: {item.get('error') or shown}")
    return "; ".join(parts) or "nothing to do"


class S3UploadWatcher:
    """Finds objects created in a bucket since the last poll, by (key, ETag)."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3 = s3
        self.bucket = bucket
        self._seen: dict[str, str] = {}

    def _listing(self) -> Iterator[dict[str, Any]]:
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            yield from page.get("Contents", [])

    def prime(self) -> int:
        """Remember what is already there (S3 sends no event for it); returns the count."""
        for obj in self._listing():
            self._seen[obj["Key"]] = obj["ETag"]
        return len(self._seen)

    def poll(self) -> list[dict[str, Any]]:
        """New or overwritten objects, oldest first, as listing entries."""
        fresh = [obj for obj in self._listing() if self._seen.get(obj["Key"]) != obj["ETag"]]
        for obj in fresh:
            self._seen[obj["Key"]] = obj["ETag"]
        return sorted(fresh, key=lambda obj: obj["LastModified"])


class HandlerFailed(Exception):
    """An SQS handler raised: the pump returns the whole batch to the queue, as Lambda does."""


class AwsDevBridge:
    """Delivers S3, schedule and (with ``sqs``) SQS events to the app's handlers.

    Handlers are called in process, as :func:`devstack.sqs_pump.chalice_invoker` does (no
    ``os.environ`` swap, so the SQS pumps' threads and the polling loop can share the app).
    With ``sqs``, every ``@app.on_sqs_message`` handler is pumped from its queue while
    :meth:`run` runs; an app without SQS handlers (no fan-out) pumps nothing.
    """

    def __init__(
        self,
        app: Any,
        s3: Any,
        input_bucket: str,
        *,
        sqs: Any = None,
        region: str = "us-east-1",
        report: Callable[[Invocation], None] = lambda inv: print(inv.line(), flush=True),
        notifications: SnsInbox | None = None,
    ) -> None:
        self.app = app
        self.notifications = notifications  # the notify topic's inbox, printed as it fills
        self.watcher = S3UploadWatcher(s3, input_bucket)
        self.input_bucket = input_bucket
        self.region = region
        self.report = report
        self.schedule_now = threading.Event()
        self.stopped = threading.Event()
        self.ready = threading.Event()  # set once existing objects are remembered
        self.queues: SqsEventSources | None = None
        if sqs is not None:
            self.queues = SqsEventSources(app, sqs, region=region, invoker=self._queue_invoker)

    def _invoke(self, function: str, subject: str, event: dict[str, Any]) -> Invocation:
        began = time.monotonic()
        try:
            result, error = chalice_invoker(self.app, function)(event), None
        except Exception as exc:  # a handler that raises is shown, and the bridge goes on
            result, error = None, f"{type(exc).__name__}: {exc}"
        invocation = Invocation(function, subject, result, error, time.monotonic() - began)
        self.report(invocation)
        return invocation

    def pumped(self) -> list[str]:
        """One line per queue :meth:`run` pumps (none without ``sqs`` or SQS handlers)."""
        return [mapping.describe() for mapping in self.queues.mappings] if self.queues else []

    def _queue_invoker(self, function: str, queue: str) -> Invoke:
        """What a pump calls: the handler, reported like the other invocations."""

        def invoke(event: dict[str, Any]) -> Any:
            count = len(event["Records"])
            subject = f"sqs:{queue} ({count} message{'s' if count != 1 else ''})"
            invocation = self._invoke(function, subject, event)
            if invocation.error:
                raise HandlerFailed(invocation.error)
            return invocation.result

        return invoke

    def deliver_uploads(self) -> list[Invocation]:
        """One S3 notification per new object, as S3 sends them."""
        done = []
        for obj in self.watcher.poll():
            record = s3_put_record(
                self.input_bucket,
                obj["Key"],
                size=obj["Size"],
                etag=obj["ETag"],
                region=self.region,
            )
            done.append(
                self._invoke(
                    "on_upload", f"s3://{self.input_bucket}/{obj['Key']}", s3_event([record])
                )
            )
        return done

    def show_notifications(self, printer: Callable[[str], None] | None = None) -> int:
        """Print the run notifications the SNS topic got since the last call; how many."""
        inbox = self.notifications
        if inbox is None:
            return 0
        events = inbox.drain()
        for event in events:
            print_notification(f"SNS {inbox.topic_arn}", event, printer or _print_now)
        return len(events)

    def fire_schedule(self) -> Invocation:
        """One EventBridge scheduled event to ``on_schedule``."""
        return self._invoke("on_schedule", "schedule", scheduled_event(region=self.region))

    def prime(self) -> int:
        """Remember the objects already in the bucket; uploads after this are delivered."""
        count = self.watcher.prime()
        self.ready.set()
        return count

    def run(self, poll_interval: float = 0.5, schedule_every: float | None = None) -> None:
        """Poll and fire until :attr:`stopped` is set; the SQS pumps run meanwhile."""
        if not self.ready.is_set():
            self.prime()
        if self.queues is not None:
            self.queues.start()
        try:
            self._poll(poll_interval, schedule_every)
        finally:  # also on Ctrl-C: pumps finish the invocation in hand, then stop
            if self.queues is not None:
                self.queues.stop()

    def _poll(self, poll_interval: float, schedule_every: float | None) -> None:
        next_schedule = time.monotonic() + schedule_every if schedule_every else None
        while not self.stopped.is_set():
            self.deliver_uploads()
            self.show_notifications()
            due = next_schedule is not None and time.monotonic() >= next_schedule
            if due or self.schedule_now.is_set():
                self.schedule_now.clear()
                self.fire_schedule()
                if schedule_every:
                    next_schedule = time.monotonic() + schedule_every
            self.stopped.wait(poll_interval)


def _print_now(line: str) -> None:
    print(line, flush=True)


def load_app(app_path: Path = APP_DIR / "app.py") -> ModuleType:
    """Import the Chalice app module from its file (it reads its settings from the env)."""
    spec = importlib.util.spec_from_file_location("drivepipe_chalice_app", app_path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {app_path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def config_path(value: str | None) -> Path:
    """The pipelines file the app loads: ``value`` (``$DRIVEPIPE_CONFIG``) or the shipped one.

    A relative path is relative to ``chalice_app/``, as the app reads it.
    """
    path = Path(value or SHIPPED_CONFIG)
    return path if path.is_absolute() else APP_DIR / path


def fanout_queue(config: PipelineFile, requested: str | None = None) -> str | None:
    """The work queue to simulate, or ``None`` when nothing fans out.

    ``requested`` (a queue name or URL, from ``--fanout-queue`` or ``$DRIVEPIPE_FANOUT_QUEUE``)
    wins; otherwise ``drivepipe-work-local`` when a pipeline has a ``fanout`` table.
    """
    if requested and requested.strip():
        return queue_name(requested)
    if any(pipeline.fanout for pipeline in config.pipelines.values()):
        return LOCAL_WORK_QUEUE
    return None


def max_receive_count(config: PipelineFile) -> int:
    """The work queue's redrive ``maxReceiveCount``: the largest ``fanout.max_attempts``.

    A pipeline with fewer attempts records its crashed item as failed sooner; the deliveries
    after that find the result and are no-ops.
    """
    attempts = [p.fanout.max_attempts for p in config.pipelines.values() if p.fanout]
    return max(attempts, default=FanoutOptions().max_attempts)


def prepare_fanout(sqs: Any, config: PipelineFile, requested: str | None = None) -> dict[str, str]:
    """Create the work queue and its DLQ when fan-out is wanted (:func:`fanout_queue`).

    Returns the environment that names them for the app (empty: fan-out stays off).
    """
    name = fanout_queue(config, requested)
    if name is None:
        return {}
    return create_fanout_queues(sqs, name, max_receive_count=max_receive_count(config))


def ensure_bucket(s3: Any, name: str) -> None:
    """Create ``name`` unless it already exists."""
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=name)


def shadowing_copy(app_dir: Path | None = None) -> str | None:
    """Why ``chalice local`` would not run the working tree: a ``vendor/shared`` in the app
    (Chalice puts ``vendor/`` on ``sys.path`` ahead of the editable install). Builds assemble
    their project in ``build/aws-project/`` now; an older build may have left one."""
    stale = (app_dir or APP_DIR) / "vendor" / "shared"
    if not stale.exists():
        return None
    return (
        f"{stale} is a vendored copy of shared/ that chalice local would run instead of the "
        f"working tree: delete {stale.parent} (make package-aws no longer creates it)"
    )


@contextlib.contextmanager
def chalice_local(port: int, env: dict[str, str], *, quiet: bool = False) -> Iterator[str]:
    """``chalice local --stage local`` on 127.0.0.1:port; yields its URL, stops it after.

    ``quiet`` discards its output (request lines), for benchmarks."""
    from devstack.servers import venv_executable, wait_for_port

    if problem := shadowing_copy():
        raise RuntimeError(problem)

    command = [
        venv_executable("chalice"),
        "local",
        "--stage",
        LOCAL_STAGE,
        "--no-autoreload",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    output = subprocess.DEVNULL if quiet else None
    process = subprocess.Popen(
        command, cwd=APP_DIR, env=env, start_new_session=True, stdout=output, stderr=output
    )
    try:
        wait_for_port("127.0.0.1", port, timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.aws_dev",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--s3-endpoint", help="use this S3 (and SQS) endpoint instead of starting moto"
    )
    parser.add_argument("--drive-url", help="use this Drive API base URL, not the emulator")
    parser.add_argument("--drive-folder-id", help="folder to sync (default: emulator root)")
    parser.add_argument(
        "--drive-root", type=Path, default=SAMPLE_DRIVE, help="folder the Drive emulator serves"
    )
    parser.add_argument("--input-bucket", default="drivepipe-in-local")
    parser.add_argument("--output-bucket", default="drivepipe-out-local")
    parser.add_argument(
        "--config",
        type=Path,
        help="pipelines file (default: $DRIVEPIPE_CONFIG, else chalicelib/drivepipe.toml)",
    )
    parser.add_argument(
        "--fanout-queue",
        help="SQS work queue to create and pump (default: $DRIVEPIPE_FANOUT_QUEUE, else "
        f"{LOCAL_WORK_QUEUE} when a pipeline has a fanout table); its DLQ is NAME-dlq",
    )
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--http-port", type=int, default=0, help="chalice local port (0: free)")
    parser.add_argument("--no-http", action="store_true", help="do not run chalice local")
    parser.add_argument(
        "--no-push", action="store_true", help="no Drive push notifications (no channel)"
    )
    parser.add_argument("--poll-interval", type=float, default=0.5)
    parser.add_argument("--schedule-every", type=float, help="fire on_schedule every S seconds")
    return parser


def _open_push_channels(config: str) -> list[str]:
    from devstack.push_dev import open_channels

    try:
        return open_channels(config)
    except Exception as exc:  # the stack still serves; the schedule's upkeep tries again
        return [f"could not open a channel: {type(exc).__name__}: {exc}"]


def _close_push_channels(config: str) -> None:
    from devstack.push_dev import close_channels

    with contextlib.suppress(Exception):  # best effort: the emulator goes away anyway
        for line in close_channels(config):
            print(f"drive push      {line}", flush=True)


def _watch_stdin(bridge: AwsDevBridge) -> None:
    for line in sys.stdin:
        command = line.strip().lower()
        if command == "s":
            bridge.schedule_now.set()
        elif command in ("q", "quit"):
            bridge.stopped.set()
            return


def main(argv: list[str] | None = None) -> int:
    """Run the local AWS simulation until Ctrl-C / SIGTERM."""
    args = _parser().parse_args(argv)
    try:
        return _serve(args)
    except (ConfigError, QueueMissing) as exc:
        print(f"drivepipe dev aws: {exc}", file=sys.stderr)
        return 2


def _serve(args: argparse.Namespace) -> int:
    from devstack.servers import MotoServer, free_port

    with contextlib.ExitStack() as stack:
        if args.s3_endpoint:
            os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
            os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
            os.environ["AWS_ENDPOINT_URL"] = args.s3_endpoint
        else:
            moto = stack.enter_context(MotoServer())
            os.environ.update(moto.env())
            print(f"moto_server     {moto.url}", flush=True)
        os.environ.setdefault("AWS_DEFAULT_REGION", args.region)
        if args.drive_url:
            os.environ["DRIVE_API_URL"] = args.drive_url
            if args.drive_folder_id:
                os.environ["DRIVE_FOLDER_ID"] = args.drive_folder_id
        else:
            from devstack.drive_emulator.emulator import DriveEmulator

            drive = stack.enter_context(DriveEmulator(args.drive_root))
            os.environ.update(
                {
                    "DRIVE_API_URL": drive.url,
                    "DRIVE_FOLDER_ID": args.drive_folder_id or drive.root_id,
                }
            )
            os.environ.setdefault("DRIVE_ACCESS_TOKEN", "local-dev")
            print(f"drive emulator  {drive.url} (folder {drive.root_id})", flush=True)
        os.environ.update(
            {
                "DRIVEPIPE_INPUT_BUCKET": args.input_bucket,
                "DRIVEPIPE_OUTPUT_BUCKET": args.output_bucket,
                "DRIVEPIPE_HTTP_AUTH": "none",
                "DRIVEPIPE_PUBLIC": "true",
            }
        )
        chosen = str(args.config.resolve()) if args.config else os.environ.get(CONFIG_ENV)
        config = config_path(chosen)
        os.environ[CONFIG_ENV] = str(config)
        import boto3

        endpoint = os.environ.get("AWS_ENDPOINT_URL")
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name=args.region)
        sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=args.region)
        for bucket in (args.input_bucket, args.output_bucket):
            ensure_bucket(s3, bucket)
        print(f"buckets         s3://{args.input_bucket} -> s3://{args.output_bucket}", flush=True)
        inbox = None
        if not os.environ.get(NOTIFY_TOPIC_ENV):
            sns = boto3.client("sns", endpoint_url=endpoint, region_name=args.region)
            inbox = SnsInbox(sns, sqs)
            os.environ[NOTIFY_TOPIC_ENV] = inbox.topic_arn
            print(f"sns topic       {inbox.topic_arn} (run notifications, printed here)")
        requested = args.fanout_queue or os.environ.get(QUEUE_ENV)
        os.environ.update(prepare_fanout(sqs, load_config(config), requested))
        port = args.http_port or free_port()
        push = not (args.no_push or args.no_http)
        if push:
            from devstack.push_dev import aws_push_env

            os.environ.update(aws_push_env(sqs, f"http://127.0.0.1:{port}"))
        if not args.no_http:
            url = stack.enter_context(chalice_local(port, dict(os.environ)))
            print(f"http            {url}  (POST /sync, GET /health, GET /runs/ID)", flush=True)
        bridge = AwsDevBridge(
            load_app().app, s3, args.input_bucket, sqs=sqs, region=args.region, notifications=inbox
        )
        for line in bridge.pumped():
            print(f"sqs pump        {line}", flush=True)
        if push:
            stack.callback(_close_push_channels, str(config))
            for line in _open_push_channels(str(config)):
                print(f"drive push      {line}", flush=True)
        signal.signal(signal.SIGUSR1, lambda *_: bridge.schedule_now.set())
        signal.signal(signal.SIGTERM, lambda *_: bridge.stopped.set())
        bridge.prime()
        if sys.stdin.isatty():
            threading.Thread(target=_watch_stdin, args=(bridge,), daemon=True).start()
        print(
            "ready: upload under incoming/ or requests/; 's'+Enter or SIGUSR1 fires the "
            "schedule; Ctrl-C stops",
            flush=True,
        )
        if push and not args.drive_url:
            print(f"push: edit or delete a file under {args.drive_root} -> the lake", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            bridge.run(args.poll_interval, args.schedule_every)
    return 0


if __name__ == "__main__":
    sys.exit(main())
