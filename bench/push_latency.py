"""Benchmark: from a file changing in Drive to its output object written, through the webhook.

    python -m bench.push_latency [--cloud aws|gcp|both] [--runs 10] [--settle 1.0]

The local path of each cloud, as ``drivepipe dev aws|gcp`` runs it: the Drive emulator notices
the change on disk (it looks every 0.2 s while a channel is open) and POSTs a real notification
to the webhook (``chalice local``, or the ``drive_notifications`` function); the webhook hands
off to the push queue (SQS on moto, pumped into ``push_worker``; or the Pub/Sub stand-in
delivering to the ``push_worker`` function), which waits ``--settle`` seconds of quiet
(``DRIVEPIPE_PUSH_SETTLE_SECONDS``) and syncs the changes feed into the lake.

Each run rewrites one CSV (a new mtime, renamed into place as editors save) and times until the
output object's content changes; runs are apart (everything idle in between). Prints the
median of ``--runs`` beside what the schedule it replaces costs: with ``rate(1 hour)`` a change
waits half an hour on average. Target: median <= 5 s. Real Drive adds its own delay before it
sends a notification (not measured here).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
POLLING_INTERVAL_S = 3600.0  # the shipped schedule: rate(1 hour)
TARGET_S = 5.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cloud", choices=["aws", "gcp", "both"], default="both")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--settle", type=float, default=1.0, help="DRIVEPIPE_PUSH_SETTLE_SECONDS")
    return parser.parse_args(argv)


def save(path: Path, text: str) -> None:
    """One change: a hidden file with a new mtime, renamed into place."""
    temporary = path.with_name(f".{path.name}.saving")
    temporary.write_text(text)
    stamp = time.time_ns()
    os.utime(temporary, ns=(stamp, stamp))
    os.replace(temporary, path)


def wait(check: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("the change did not reach the lake")
        time.sleep(0.02)


def measure(
    root: Path, version: Callable[[], Any], idle: Callable[[], None], runs: int
) -> list[float]:
    """Rewrite ``sales/bench.csv`` ``runs`` times; seconds until ``version()`` changed."""
    target = root / "sales" / "bench.csv"
    save(target, "region,units\nnorth,1\n")
    wait(lambda: version() is not None)  # the first sync (a walk) is not timed
    idle()
    seconds = []
    for n in range(runs):
        before = version()
        save(target, f"region,units\nnorth,{n + 2}\n")
        began = time.monotonic()
        wait(lambda old=before: version() not in (None, old))  # type: ignore[misc]
        seconds.append(time.monotonic() - began)
        idle()
    return seconds


@contextlib.contextmanager
def aws_stack(root: Path, settle: float) -> Iterator[tuple[Callable[[], Any], Callable[[], None]]]:
    from devstack.aws_dev import AwsDevBridge, chalice_local, ensure_bucket, load_app
    from devstack.drive_emulator import DriveEmulator
    from devstack.push_dev import AWS_PUSH_QUEUE, aws_push_env, open_channels
    from devstack.servers import MotoServer, free_port

    config = REPO / "chalice_app" / "chalicelib" / "drivepipe.toml"
    with MotoServer() as moto, DriveEmulator(root) as drive:
        s3, sqs, port = moto.client("s3"), moto.client("sqs"), free_port()
        for bucket in ("bench-in", "bench-out"):
            ensure_bucket(s3, bucket)
        os.environ.update(
            {
                **moto.env(),
                "DRIVE_API_URL": drive.url,
                "DRIVE_ACCESS_TOKEN": "bench",
                "DRIVE_FOLDER_ID": drive.root_id,
                "DRIVEPIPE_INPUT_BUCKET": "bench-in",
                "DRIVEPIPE_OUTPUT_BUCKET": "bench-out",
                "DRIVEPIPE_CONFIG": str(config),
                "DRIVEPIPE_HTTP_AUTH": "iam",
                "DRIVEPIPE_PUSH_SETTLE_SECONDS": str(settle),
                "DRIVEPIPE_LOG_LEVEL": "WARNING",
                **aws_push_env(sqs, f"http://127.0.0.1:{port}"),
            }
        )
        with chalice_local(port, dict(os.environ), quiet=True):
            bridge = AwsDevBridge(load_app().app, s3, "bench-in", sqs=sqs, report=lambda _: None)
            assert bridge.queues is not None
            bridge.queues.start()
            try:
                open_channels(str(config))
                url = sqs.get_queue_url(QueueName=AWS_PUSH_QUEUE)["QueueUrl"]

                def version() -> Any:
                    try:
                        return s3.head_object(Bucket="bench-out", Key="sales/sales/bench.parquet")[
                            "ETag"
                        ]
                    except s3.exceptions.ClientError:
                        return None

                def idle() -> None:
                    drive.watch.wait_idle(120)
                    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
                    wait(
                        lambda: (
                            not any(
                                int(v)
                                for v in sqs.get_queue_attributes(
                                    QueueUrl=url, AttributeNames=names
                                )["Attributes"].values()
                            )
                        )
                    )

                yield version, idle
            finally:
                bridge.queues.stop()


@contextlib.contextmanager
def gcp_stack(root: Path, settle: float) -> Iterator[tuple[Callable[[], Any], Callable[[], None]]]:
    from devstack.gcp_dev import GcpDevStack

    stack = GcpDevStack(
        config=REPO / "gcp_functions" / "drivepipe.toml",
        drive_root=root,
        input_bucket="bench-in",
        output_bucket="bench-out",
        watch=False,
        push=True,
        entry_points=("on_schedule",),
        extra_env={"DRIVEPIPE_PUSH_SETTLE_SECONDS": str(settle), "DRIVEPIPE_LOG_LEVEL": "WARNING"},
        printer=lambda _: None,
    )
    with stack:
        blob = stack.client.bucket("bench-out").blob("sales/sales/bench.parquet")

        def version() -> Any:
            return blob.generation if blob.exists() and blob.reload() is None else None

        def idle() -> None:
            stack.drive.watch.wait_idle(120)
            stack.pubsub.wait_idle(120)

        yield version, idle


def run(cloud: str, runs: int, settle: float) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="push-bench-") as tmp:
        root = Path(tmp) / "drive"
        (root / "sales").mkdir(parents=True)
        (root / "sales" / "q1.csv").write_text("region,units\nnorth,3\n")
        stack = aws_stack if cloud == "aws" else gcp_stack
        saved = dict(os.environ)
        try:
            with stack(root, settle) as (version, idle):
                return measure(root, version, idle, runs)
        finally:
            os.environ.clear()
            os.environ.update(saved)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"push latency, {args.runs} runs per cloud, settle {args.settle:g} s; load: {load}")
    clouds = ["aws", "gcp"] if args.cloud == "both" else [args.cloud]
    polling = POLLING_INTERVAL_S / 2
    print(f"{'path':<36}{'median':>9}{'min':>8}{'max':>8}   vs polling rate(1 hour)")
    ok = True
    for cloud in clouds:
        seconds = run(cloud, args.runs, args.settle)
        median = statistics.median(seconds)
        ok = ok and median <= TARGET_S
        label = "chalice local + SQS" if cloud == "aws" else "functions-framework + Pub/Sub"
        print(
            f"{cloud + ': ' + label:<36}{median:>8.2f}s{min(seconds):>7.2f}s{max(seconds):>7.2f}s"
            f"   {polling:.0f} s average wait ({polling / median:,.0f}x longer)"
        )
    print(f"target: median <= {TARGET_S:g} s: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
