"""Benchmark: one inline sync vs the same sync fanned out to W queue workers (SQS on moto).

    python -m bench.fanout [--files 1000] [--latency 0.05] [--workers 1,4,8] [--batch-size 10]

The Drive emulator (its own process, ``--latency`` seconds added to every request) serves a
generated folder of small CSVs; outputs go to moto_server S3 as Parquet. Contenders:

- inline: ``run_sync`` in one process (one function instance; it fetches 8 files at a time);
- fan-out W: ``start_fanout`` lists and enqueues items of ``--batch-size`` files on an SQS queue;
  W worker *processes* (one function instance each, as Lambda runs one event per instance),
  each an :class:`devstack.sqs_pump.SqsPump` feeding the Chalice ``fanout_worker`` handler,
  process them. Timed from the start of planning until the run's manifest exists. Workers are
  started (pandas imported) before the clock starts, like warm instances.

Every contender starts from an empty destination and its own queue. Prints wall times,
files/s and the speedup over inline. On a 2-core machine the CPU part (parse + Parquet) caps
the speedup near 2x; the rest comes from overlapping Drive latency across instances.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from devstack.drive_emulator.generate import generate_tree
from devstack.servers import MotoServer, free_port, wait_for_port

ROOT_ID = "benchroot"
CONFIG = """
[pipelines.bench]
source = { folder_id = "${DRIVE_FOLDER_ID}" }
steps = [{ op = "normalize_columns" }]
output = { url = "s3://${DRIVEPIPE_OUTPUT_BUCKET}/bench", format = "parquet" }
fanout = { min_files = 50, batch_size = BATCH }
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per Drive request")
    parser.add_argument("--workers", default="1,4,8", help="comma-separated worker counts")
    parser.add_argument("--batch-size", type=int, default=10, help="files per work item")
    return parser.parse_args(argv)


def start_emulator(root: Path, latency: float) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    command = [
        sys.executable, "-m", "devstack.drive_emulator", "--root", str(root), "--port", str(port),
        "--root-id", ROOT_ID, "--latency", str(latency),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, start_new_session=True)
    wait_for_port("127.0.0.1", port, timeout=30)
    return process, f"http://127.0.0.1:{port}/drive/v3"


def worker_process(env: dict[str, str], queue_url: str, ready: Any, stop: Any) -> None:
    """One function instance: import the app, then pump the queue until told to stop."""
    os.environ.update(env)
    from devstack.aws_dev import load_app
    from devstack.sqs_pump import SqsPump, chalice_invoker

    app = load_app().app
    import importlib

    import boto3

    for module in (
        "shared.transform.readers",
        "shared.transform.steps",
        "shared.transform.writers",
        "pyarrow.parquet",
    ):
        importlib.import_module(module)  # a warm instance: imported before the clock starts
    sqs = boto3.client("sqs", endpoint_url=env["AWS_ENDPOINT_URL"])
    pump = SqsPump(sqs, queue_url, chalice_invoker(app, "fanout_worker"), batch_size=1)
    ready.set()
    while not stop.is_set():
        if not pump.poll_once():
            time.sleep(0.02)


def run_inline(env: dict[str, str]) -> float:
    from shared.config import load_config_from_env
    from shared.run.sync import SyncRequest, run_sync

    os.environ.update(env)
    load_config_from_env.cache_clear()
    pipeline = load_config_from_env().pipelines["bench"]
    began = time.perf_counter()
    manifest = run_sync(SyncRequest(pipeline=pipeline, trigger="bench"))
    seconds = time.perf_counter() - began
    assert manifest.counts()["written"] > 0, manifest.summary()
    return seconds


def run_fanout(env: dict[str, str], moto: MotoServer, workers: int) -> tuple[float, int]:
    from devstack.sqs_pump import create_work_queues
    from shared.config import load_config_from_env
    from shared.run.fanout.planner import FanoutStarted, start_fanout
    from shared.run.fanout.queues import SqsQueue
    from shared.run.sync import SyncRequest

    name = f"bench-{uuid.uuid4().hex[:8]}"
    queue_url, _ = create_work_queues(moto.client("sqs"), name, visibility_timeout=300)
    env = {**env, "DRIVEPIPE_FANOUT_QUEUE": name}
    os.environ.update(env)
    load_config_from_env.cache_clear()
    context = mp.get_context("spawn")
    ready = [context.Event() for _ in range(workers)]
    stop = context.Event()
    processes = [
        context.Process(target=worker_process, args=(env, queue_url, ready[n], stop))
        for n in range(workers)
    ]
    for process in processes:
        process.start()
    try:
        for event in ready:
            event.wait(120)
        pipeline = load_config_from_env().pipelines["bench"]
        s3 = moto.client("s3")
        began = time.perf_counter()
        started = start_fanout(SyncRequest(pipeline=pipeline, trigger="bench"), SqsQueue(name))
        assert isinstance(started, FanoutStarted)
        key = f"bench/_runs/{started.run_id}.json"
        while True:
            try:
                s3.head_object(Bucket=env["DRIVEPIPE_OUTPUT_BUCKET"], Key=key)
                break
            except s3.exceptions.ClientError:
                time.sleep(0.05)
        return time.perf_counter() - began, started.items
    finally:
        stop.set()
        for process in processes:
            process.join(30)
            if process.is_alive():
                process.kill()


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(1)  # leave through the with-blocks: servers and workers are stopped


def main(argv: list[str] | None = None) -> int:
    """Run every contender and print the table."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    counts = [int(w) for w in args.workers.split(",") if w.strip()]
    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as scratch, MotoServer() as moto:
        root = Path(scratch) / "drive"
        generate_tree(root, args.files, min_size=512, max_size=4096, depth=2, fanout=10, seed=1)
        config = Path(scratch) / "drivepipe.toml"
        config.write_text(CONFIG.replace("BATCH", str(args.batch_size)), encoding="utf-8")
        emulator, drive_url = start_emulator(root, args.latency)
        base_env = {
            **moto.env(),
            "DRIVE_API_URL": drive_url,
            "DRIVE_ACCESS_TOKEN": "bench",
            "DRIVE_FOLDER_ID": ROOT_ID,
            "DRIVEPIPE_CONFIG": str(config),
            "DRIVEPIPE_INPUT_BUCKET": moto.create_bucket(f"in-{uuid.uuid4().hex[:8]}"),
            "DRIVEPIPE_HTTP_AUTH": "none",
            "DRIVEPIPE_PUBLIC": "true",
        }
        try:
            print(
                f"{args.files} files, Drive latency {args.latency * 1000:.0f} ms/request, "
                f"{args.batch_size} files per item, {os.cpu_count()} CPUs",
                flush=True,
            )
            out = moto.create_bucket(f"out-{uuid.uuid4().hex[:8]}")
            inline = run_inline({**base_env, "DRIVEPIPE_OUTPUT_BUCKET": out})
            print(
                f"{'inline (1 instance)':<22} {inline:7.2f} s  {args.files / inline:7.1f} files/s"
            )
            for workers in counts:
                out = moto.create_bucket(f"out-{uuid.uuid4().hex[:8]}")
                env = {**base_env, "DRIVEPIPE_OUTPUT_BUCKET": out}
                seconds, items = run_fanout(env, moto, workers)
                print(
                    f"{f'fan-out W={workers}':<22} {seconds:7.2f} s  "
                    f"{args.files / seconds:7.1f} files/s  speedup x{inline / seconds:.2f}"
                    f"  ({items} items)",
                    flush=True,
                )
        finally:
            emulator.terminate()
            emulator.wait(10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
