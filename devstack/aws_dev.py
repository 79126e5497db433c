"""The Chalice app on the local stack, with the S3 and schedule events ``chalice local`` lacks.

``python -m devstack.aws_dev`` (``drivepipe dev aws``):

1. starts ``moto_server`` (unless ``--s3-endpoint``) and the Drive emulator on the sample
   folder (unless ``--drive-url``), and creates the input and output buckets;
2. runs ``chalice local --stage local`` on a free port for the HTTP API;
3. polls the input bucket every ``--poll-interval`` seconds and delivers each new object
   (new key, or same key with a new ETag) to ``on_upload`` as a real S3 notification;
4. fires an EventBridge ``Scheduled Event`` at ``on_schedule`` every ``--schedule-every``
   seconds, on ``SIGUSR1``, or when you type ``s`` + Enter.

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

REPO_ROOT = Path(__file__).resolve().parent.parent
APP_DIR = REPO_ROOT / "chalice_app"
SAMPLE_DRIVE = Path(__file__).resolve().parent / "samples" / "drive"
LOCAL_STAGE = "local"


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


class AwsDevBridge:
    """Delivers S3 and schedule events to the app's handlers through ``chalice.test.Client``."""

    def __init__(
        self,
        app: Any,
        s3: Any,
        input_bucket: str,
        *,
        region: str = "us-east-1",
        report: Callable[[Invocation], None] = lambda inv: print(inv.line(), flush=True),
    ) -> None:
        from chalice.test import Client

        self.client = Client(app)
        self.watcher = S3UploadWatcher(s3, input_bucket)
        self.input_bucket = input_bucket
        self.region = region
        self.report = report
        self.schedule_now = threading.Event()
        self.stopped = threading.Event()
        self.ready = threading.Event()  # set once existing objects are remembered

    def _invoke(self, function: str, subject: str, event: dict[str, Any]) -> Invocation:
        began = time.monotonic()
        try:
            result, error = self.client.lambda_.invoke(function, event).payload, None
        except Exception as exc:  # a handler that raises is shown, and the bridge goes on
            result, error = None, f"{type(exc).__name__}: {exc}"
        invocation = Invocation(function, subject, result, error, time.monotonic() - began)
        self.report(invocation)
        return invocation

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

    def fire_schedule(self) -> Invocation:
        """One EventBridge scheduled event to ``on_schedule``."""
        return self._invoke("on_schedule", "schedule", scheduled_event(region=self.region))

    def prime(self) -> int:
        """Remember the objects already in the bucket; uploads after this are delivered."""
        count = self.watcher.prime()
        self.ready.set()
        return count

    def run(self, poll_interval: float = 0.5, schedule_every: float | None = None) -> None:
        """Poll and fire until :attr:`stopped` is set."""
        if not self.ready.is_set():
            self.prime()
        next_schedule = time.monotonic() + schedule_every if schedule_every else None
        while not self.stopped.is_set():
            self.deliver_uploads()
            due = next_schedule is not None and time.monotonic() >= next_schedule
            if due or self.schedule_now.is_set():
                self.schedule_now.clear()
                self.fire_schedule()
                if schedule_every:
                    next_schedule = time.monotonic() + schedule_every
            self.stopped.wait(poll_interval)


def load_app(app_path: Path = APP_DIR / "app.py") -> ModuleType:
    """Import the Chalice app module from its file (it reads its settings from the env)."""
    spec = importlib.util.spec_from_file_location("drivepipe_chalice_app", app_path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {app_path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def ensure_bucket(s3: Any, name: str) -> None:
    """Create ``name`` unless it already exists."""
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=name)


@contextlib.contextmanager
def chalice_local(port: int, env: dict[str, str]) -> Iterator[str]:
    """``chalice local --stage local`` on 127.0.0.1:port; yields its URL, stops it after."""
    from devstack.servers import venv_executable, wait_for_port

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
    process = subprocess.Popen(command, cwd=APP_DIR, env=env, start_new_session=True)
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
    parser.add_argument("--s3-endpoint", help="use this S3 endpoint instead of starting moto")
    parser.add_argument("--drive-url", help="use this Drive API base URL, not the emulator")
    parser.add_argument("--drive-folder-id", help="folder to sync (default: emulator root)")
    parser.add_argument(
        "--drive-root", type=Path, default=SAMPLE_DRIVE, help="folder the Drive emulator serves"
    )
    parser.add_argument("--input-bucket", default="drivepipe-in-local")
    parser.add_argument("--output-bucket", default="drivepipe-out-local")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--http-port", type=int, default=0, help="chalice local port (0: free)")
    parser.add_argument("--no-http", action="store_true", help="do not run chalice local")
    parser.add_argument("--poll-interval", type=float, default=0.5)
    parser.add_argument("--schedule-every", type=float, help="fire on_schedule every S seconds")
    return parser


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
        import boto3

        s3 = boto3.client(
            "s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL"), region_name=args.region
        )
        for bucket in (args.input_bucket, args.output_bucket):
            ensure_bucket(s3, bucket)
        print(f"buckets         s3://{args.input_bucket} -> s3://{args.output_bucket}", flush=True)
        if not args.no_http:
            url = stack.enter_context(
                chalice_local(args.http_port or free_port(), dict(os.environ))
            )
            print(f"http            {url}  (POST /sync, GET /health, GET /runs/ID)", flush=True)
        bridge = AwsDevBridge(load_app().app, s3, args.input_bucket, region=args.region)
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
        with contextlib.suppress(KeyboardInterrupt):
            bridge.run(args.poll_interval, args.schedule_every)
    return 0


if __name__ == "__main__":
    sys.exit(main())
