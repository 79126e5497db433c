"""Run the Cloud Functions locally, wired like production: ``drivepipe dev gcp``.

Starts gcp-storage-emulator (unless ``--gcs-url`` is given) and the Drive emulator over a local
folder, serves ``sync_http``, ``on_upload`` and ``on_schedule`` with functions-framework on free
ports, then watches the emulated input bucket: every new (name, generation) is POSTed to
``on_upload`` as the finalize CloudEvent GCS would send. Scheduler events go to ``on_schedule``
on a timer (``--schedule-every``) or when you type ``schedule [pipeline ...]``.

Unless ``--no-push``, Drive push notifications are on (``DRIVEPIPE_PUSH=true``,
:mod:`devstack.push_dev`): ``drive_notifications`` and ``push_worker`` are served too, the push
topic is delivered to ``push_worker`` by the Pub/Sub stand-in, channel tokens live in the
Secret Manager stand-in, and a first scheduler event opens the channel from the Drive emulator
to ``drive_notifications`` (and reconciles the lake). Edit or delete a file in the emulator's
folder and the lake follows within seconds.

Run notifications go to a local Pub/Sub stand-in topic (``DRIVEPIPE_NOTIFY_TOPIC``) and are
printed as they arrive: upload the malformed sample (``devstack/samples/drive/broken/bad.csv``)
under ``incoming/sales/`` to see one.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from devstack.gcp_cloudevents import (
    CloudEventMessage,
    Delivery,
    deliver,
    gcs_finalize_event,
    resource_from_blob,
    scheduler_event,
)
from devstack.notify_local import print_notification, pubsub_event
from devstack.pubsub_local import PubSubStandIn, Subscription
from devstack.servers import HOST, GcsEmulator, LocalServer, free_port, venv_executable

REPO_ROOT = Path(__file__).resolve().parent.parent
FUNCTION_SOURCE = REPO_ROOT / "gcp_functions" / "main.py"
DEFAULT_CONFIG = REPO_ROOT / "gcp_functions" / "drivepipe.toml"
SAMPLE_DRIVE = Path(__file__).resolve().parent / "samples" / "drive"
ENTRY_POINTS = ("sync_http", "on_upload", "on_schedule")
PUSH_ENTRY_POINTS = ("drive_notifications", "push_worker")
PUSH_TOPIC = "drivepipe-push-local"
NOTIFY_TOPIC = "projects/local/topics/drivepipe-alerts"  # what drivepipe.toml's notify reads
Printer = Callable[[str], None]


class FunctionServer(LocalServer):
    """``functions-framework --target T --source main.py`` on 127.0.0.1 with its own env."""

    def __init__(
        self,
        target: str,
        env: dict[str, str],
        *,
        source: Path = FUNCTION_SOURCE,
        port: int | None = None,
        start_timeout: float = 60.0,
        executable: str | None = None,
        cwd: Path | None = None,
    ) -> None:
        super().__init__(port, start_timeout=start_timeout)
        self.name = f"functions-framework:{target}"
        self.target = target
        self.source = source
        self.extra_env = env
        self.executable = executable  # another venv's functions-framework (clean-install check)
        self.cwd = cwd  # Cloud Run starts the function from its source directory

    def command(self) -> list[str]:
        """``env K=V... functions-framework --target T --source S --host H --port P``."""
        assignments = [f"{k}={v}" for k, v in self.extra_env.items()]
        # K_SERVICE etc. as Cloud Run sets them, so the function logs JSON lines as in the cloud.
        cloud = [
            f"K_SERVICE={self.target.replace('_', '-')}",
            "K_REVISION=local",
            f"FUNCTION_TARGET={self.target}",
        ]
        chdir = ["-C", str(self.cwd)] if self.cwd else []  # GNU env
        return [
            "env",
            *chdir,
            *cloud,
            *assignments,
            self.executable or venv_executable("functions-framework"),
            "--target",
            self.target,
            "--source",
            str(self.source),
            "--host",
            HOST,
            "--port",
            str(self.port),
        ]

    def env(self) -> dict[str, str]:
        """The environment the function process runs with (beyond the inherited one)."""
        return dict(self.extra_env)

    def log_text(self) -> str:
        """Everything the function printed so far (stdout and stderr)."""
        path = self._log_path
        if path is None or not path.exists():
            return ""
        return path.read_text(encoding="utf-8", errors="replace")


def start_all(servers: Iterable[LocalServer]) -> None:
    """Start servers in parallel (each functions-framework cold start imports pandas, ~1-2 s);
    if any fails, stop them all and raise its error."""
    started = list(servers)
    errors: list[BaseException] = []

    def start(server: LocalServer) -> None:
        try:
            server.start()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(s,)) for s in started]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        for server in started:
            server.stop()
        raise errors[0]


class BucketWatcher:
    """Poll a bucket and hand every new (name, generation) to ``on_new`` (like a GCS trigger)."""

    def __init__(
        self,
        client: Any,
        bucket: str,
        on_new: Callable[[Any], object],
        *,
        interval: float = 0.5,
        include_existing: bool = False,
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.on_new = on_new
        self.interval = interval
        self.seen: set[tuple[str, int]] = set()
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if not include_existing:
            self.seen.update(self._listing().keys())

    def _listing(self) -> dict[tuple[str, int], Any]:
        return {(b.name, int(b.generation or 0)): b for b in self.client.list_blobs(self.bucket)}

    def poll_once(self) -> int:
        """One listing pass; returns how many new objects were handed on."""
        fresh = [
            (key, blob) for key, blob in sorted(self._listing().items()) if key not in self.seen
        ]
        for key, blob in fresh:
            self.seen.add(key)
            self.on_new(blob)
        return len(fresh)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll_once()
            except Exception as exc:  # keep watching; a dev tool must not die on one error
                self.errors.append(repr(exc))

    def start(self) -> BucketWatcher:
        """Watch in a daemon thread."""
        self._thread = threading.Thread(target=self._run, name=f"watch-{self.bucket}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


class GcpDevStack:
    """The local GCP stand-in: emulators + three functions + the event bridge."""

    def __init__(
        self,
        *,
        config: Path = DEFAULT_CONFIG,
        drive_root: Path = SAMPLE_DRIVE,
        gcs_url: str | None = None,
        input_bucket: str = "drivepipe-in",
        output_bucket: str = "drivepipe-out",
        project: str = "local",
        poll_interval: float = 0.5,
        retries: int = 2,
        watch: bool = True,
        extra_env: dict[str, str] | None = None,
        printer: Printer = print,
        push: bool = False,
        entry_points: Sequence[str] = ENTRY_POINTS,
        drive_clock: Callable[[], float] | None = None,
    ) -> None:
        self.config = config
        self.drive_root = drive_root
        self.gcs_url = gcs_url
        self.input_bucket = input_bucket
        self.output_bucket = output_bucket
        self.project = project
        self.poll_interval = poll_interval
        self.retries = retries
        self.watch = watch
        self.extra_env = extra_env or {}
        self.printer = printer
        self.push = push
        self.entry_points = tuple(entry_points) + (PUSH_ENTRY_POINTS if push else ())
        self.drive_clock = drive_clock
        self._secrets: Any = None
        self._push_env: dict[str, str] = {}
        self.functions: dict[str, FunctionServer] = {}
        self.deliveries: list[tuple[str, Delivery]] = []
        self._gcs: GcsEmulator | None = None
        self._pubsub: PubSubStandIn | None = None  # run notifications (DRIVEPIPE_NOTIFY_TOPIC)
        self._drive: Any = None
        self._watcher: BucketWatcher | None = None
        self._client: Any = None
        self._lock = threading.Lock()

    # ---- lifecycle ------------------------------------------------------------------------
    def start(self) -> GcpDevStack:
        """Start everything; on any failure stop what already started and re-raise."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        from devstack.drive_emulator.emulator import DriveEmulator

        if self.gcs_url is None:
            self._gcs = GcsEmulator().start()
            self.gcs_url = self._gcs.url
        self._client = storage_client(self.gcs_url, self.project)
        for bucket in (self.input_bucket, self.output_bucket):
            if self._client.lookup_bucket(bucket) is None:
                self._client.create_bucket(bucket)
        clock = {"clock": self.drive_clock} if self.drive_clock else {}
        self._drive = DriveEmulator(self.drive_root, **clock).start()
        # one Pub/Sub stand-in: run notifications, and the push topic with push on
        self._pubsub = PubSubStandIn(on_publish=self._notified).start()
        ports = {t: free_port() for t in self.entry_points} if self.push else {}
        if self.push:
            self._start_push(ports["drive_notifications"])
        env = self.function_env()
        servers = {t: FunctionServer(t, env, port=ports.get(t)) for t in self.entry_points}
        start_all(servers.values())
        self.functions = servers
        if self.push:
            self._pubsub.subscribe(
                Subscription(self._push_env["DRIVEPIPE_PUSH_TOPIC"], self.url("push_worker"))
            )
            self.fire_schedule(None)  # the upkeep opens each push pipeline's channel
        if self.watch:
            self._watcher = BucketWatcher(
                self._client, self.input_bucket, self.deliver_object, interval=self.poll_interval
            ).start()

    def _start_push(self, webhook_port: int) -> None:
        from devstack.push_dev import gcp_push_env
        from devstack.secretmanager_local import SecretManagerStandIn

        assert self._pubsub is not None  # started first, in _start
        self._pubsub.on_delivery = self._report_push
        self._secrets = SecretManagerStandIn().__enter__()
        self._push_env = gcp_push_env(
            webhook_url=f"http://{HOST}:{webhook_port}/",
            pubsub_host=self._pubsub.host,
            secrets_host=self._secrets.host,
            project=self.project,
            topic=PUSH_TOPIC,
        )

    def _report_push(self, subscription: Any, message: dict[str, Any], result: Any) -> None:
        pipeline = message.get("attributes", {}).get("pipeline", "?")
        if result is None:
            self.printer(f"[push_worker] {pipeline} -> no answer (redelivered)")
            return
        outcome = "ok" if result.ok else "FAILED, redelivered"
        self.printer(
            f"[push_worker] {pipeline} -> {result.status} ({result.seconds:.2f}s, {outcome})"
        )

    def stop(self) -> None:
        """Stop the watcher, the functions and the emulators this stack started."""
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
        for server in self.functions.values():
            server.stop()
        if self._pubsub is not None:
            self._pubsub.stop()
            self._pubsub = None
        if self._secrets is not None:
            self._secrets.__exit__(None, None, None)
            self._secrets = None
        if self._drive is not None:
            self._drive.stop()
            self._drive = None
        if self._gcs is not None:
            self._gcs.stop()
            self._gcs = None

    def __enter__(self) -> GcpDevStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- wiring ---------------------------------------------------------------------------
    def function_env(self) -> dict[str, str]:
        """What the function processes see: emulators, buckets, the Drive folder, the config."""
        return {
            "DRIVEPIPE_CONFIG": str(self.config),
            "STORAGE_EMULATOR_HOST": str(self.gcs_url),
            "GOOGLE_CLOUD_PROJECT": self.project,
            "DRIVE_API_URL": self._drive.url,
            "DRIVE_ACCESS_TOKEN": "local-dev-token",
            "DRIVE_FOLDER_ID": self._drive.root_id,
            "DRIVEPIPE_INPUT_BUCKET": self.input_bucket,
            "DRIVEPIPE_OUTPUT_BUCKET": self.output_bucket,
            **self._push_env,
            **self.notification_env(),
            **self.extra_env,
        }

    def notification_env(self) -> dict[str, str]:
        """The run notifications' topic, on the local Pub/Sub stand-in."""
        if self._pubsub is None:
            return {}
        return {"PUBSUB_EMULATOR_HOST": self._pubsub.host, "DRIVEPIPE_NOTIFY_TOPIC": NOTIFY_TOPIC}

    def _notified(self, topic: str, message: dict[str, Any]) -> None:
        if topic == NOTIFY_TOPIC:
            print_notification(f"Pub/Sub {topic}", pubsub_event(message), self.printer)

    @property
    def notifications(self) -> list[dict[str, Any]]:
        """The run events published to the notification topic so far."""
        published = self._pubsub.published.get(NOTIFY_TOPIC, []) if self._pubsub else []
        return [pubsub_event(message) for message in published]

    @property
    def drive(self) -> Any:
        """The Drive emulator (its channels, faults and deliveries)."""
        return self._drive

    @property
    def pubsub(self) -> Any:
        """The Pub/Sub stand-in delivering the push topic (with push on), else None."""
        return self._pubsub

    @property
    def client(self) -> Any:
        """google-cloud-storage client bound to the emulator."""
        return self._client

    def url(self, target: str) -> str:
        """Base URL of one function, e.g. ``http://127.0.0.1:PORT``."""
        return self.functions[target].url

    # ---- deliveries -----------------------------------------------------------------------
    def _send(self, label: str, target: str, event: CloudEventMessage) -> Delivery:
        attempt = 0
        while True:
            result = deliver(self.url(target), event)
            with self._lock:
                self.deliveries.append((label, result))
            outcome = "ok" if result.ok else "FAILED"
            self.printer(
                f"[{target}] {label} -> {result.status} {result.text[:200]} "
                f"({result.seconds:.2f}s, {outcome})"
            )
            if result.ok or attempt >= self.retries:
                return result
            attempt += 1  # like --retry: redeliver the same event (same id) after a pause
            time.sleep(min(2.0**attempt * 0.25, 5.0))

    def deliver_object(self, blob: Any) -> Delivery:
        """POST the finalize event for one blob to ``on_upload``."""
        event = gcs_finalize_event(resource_from_blob(blob))
        label = f"gs://{blob.bucket.name}/{blob.name} generation={blob.generation}"
        return self._send(label, "on_upload", event)

    def fire_schedule(self, pipelines: list[str] | None = None) -> Delivery:
        """POST one Cloud Scheduler message to ``on_schedule`` (``None`` = all scheduled)."""
        event = scheduler_event(pipelines, project=self.project)
        return self._send(f"schedule {pipelines or 'all scheduled'}", "on_schedule", event)

    def poll_now(self) -> int:
        """Deliver whatever is new in the input bucket right away (tests, scripts)."""
        if self._watcher is None:
            raise RuntimeError("the bucket watcher is not running (watch=False or not started)")
        return self._watcher.poll_once()


def storage_client(gcs_url: str, project: str = "local") -> Any:
    """A google-cloud-storage client for the emulator at ``gcs_url``."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(
        project=project,
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": gcs_url},
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="drivepipe dev gcp",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument(
        "--drive-root",
        type=Path,
        default=SAMPLE_DRIVE,
        help="local folder the Drive emulator serves",
    )
    parser.add_argument("--gcs-url", help="use a running gcp-storage-emulator")
    parser.add_argument("--input-bucket", default="drivepipe-in")
    parser.add_argument("--output-bucket", default="drivepipe-out")
    parser.add_argument(
        "--schedule-every",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="fire a scheduler event every SECONDS (0 = only on demand)",
    )
    parser.add_argument(
        "--no-push", action="store_true", help="no Drive push notifications (no channel)"
    )
    parser.add_argument(
        "--schedule-now",
        action="store_true",
        help="fire one scheduler event as soon as everything is up",
    )
    return parser


def _banner(stack: GcpDevStack) -> str:
    upload = (
        f'  STORAGE_EMULATOR_HOST={stack.gcs_url} python -c "from google.cloud import '
        f"storage; storage.Client(project='local').bucket('{stack.input_bucket}')"
        f".blob('incoming/sales/x.csv').upload_from_filename('x.csv')\""
    )
    return "\n".join(
        [
            f"gcs emulator   {stack.gcs_url}  buckets {stack.input_bucket} {stack.output_bucket}",
            f"drive emulator {stack.function_env()['DRIVE_API_URL']}  root {stack.drive_root}",
            *(f"{t:<14} {stack.url(t)}" for t in stack.functions),
            f"notifications  {NOTIFY_TOPIC} (local Pub/Sub stand-in, printed here)",
            f'  curl -X POST {stack.url("sync_http")}/sync -d \'{{"pipeline": "NAME"}}\'',
            "upload to trigger on_upload, e.g.:",
            upload,
            *(
                [f"push: edit or delete a file under {stack.drive_root} -> the lake"]
                if stack.push
                else []
            ),
            "type 'schedule [pipeline ...]' to fire on_schedule, 'quit' to stop.",
        ]
    )


def _read_commands(stack: GcpDevStack) -> None:
    for line in sys.stdin:
        words = line.split()
        if words[:1] == ["quit"]:
            return
        if words[:1] == ["schedule"]:
            stack.fire_schedule(words[1:] or None)
        elif words:
            print("commands: schedule [pipeline ...] | quit", flush=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM: leave through the with-block so children are stopped


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: run the stack until Ctrl-C / EOF / ``quit``."""
    args = _parser().parse_args(argv)
    stack = GcpDevStack(
        config=args.config.resolve(),
        drive_root=args.drive_root.resolve(),
        gcs_url=args.gcs_url,
        input_bucket=args.input_bucket,
        output_bucket=args.output_bucket,
        printer=lambda line: print(line, flush=True),
        push=not args.no_push,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, _interrupt)
    with stack:
        print(_banner(stack), flush=True)
        if args.schedule_now:
            stack.fire_schedule(None)
        if args.schedule_every > 0:

            def tick() -> None:
                while not stop.wait(args.schedule_every):
                    stack.fire_schedule(None)

            threading.Thread(target=tick, daemon=True).start()
        with contextlib.suppress(KeyboardInterrupt):
            _read_commands(stack)
            if not sys.stdin.isatty():
                stop.wait()  # stdin closed (background run): serve until Ctrl-C / SIGTERM
        stop.set()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
