"""Watch a fan-out run finish locally, on the simulated AWS or GCP path.

``python -m devstack.fanout_dev aws|gcp [--files 300] [--workers 4] [--drive-root DIR]``

Both paths generate (or serve) a Drive folder with the Drive emulator and start the run with
``POST /sync``, which answers 202 and a run id; then ``GET /runs/<id>`` is polled and printed
until the manifest is there.

- ``aws``: moto_server gives S3 and SQS (a work queue and its DLQ, maxReceiveCount 3); the
  Chalice app's ``sync_http`` is called through ``chalice.test.Client``, and ``--workers``
  threads (the worker's ``maximum_concurrency``) play Lambda's SQS event source mapping
  (:class:`devstack.sqs_pump.SqsEventSources`) into ``fanout_worker``, one more into
  ``fanout_dead_letter``. ``drivepipe dev aws`` pumps the same way.
- ``gcp``: gcp-storage-emulator, ``sync_http``/``fanout_worker``/``fanout_dead_letter`` under
  functions-framework, and :mod:`devstack.pubsub_local` (a LOCAL STAND-IN for Pub/Sub push, not
  the Pub/Sub emulator) delivering ``--workers`` messages at a time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from devstack.drive_emulator.emulator import DriveEmulator
from devstack.drive_emulator.faults import FaultConfig
from devstack.drive_emulator.generate import generate_tree

CONFIG = """
[pipelines.bulk]
source = {{ folder_id = "${{DRIVE_FOLDER_ID}}" }}
steps = [{{ op = "normalize_columns" }}]
output = {{ url = "{scheme}://${{DRIVEPIPE_OUTPUT_BUCKET}}/bulk", format = "parquet" }}
fanout = {{ min_files = 50, batch_size = {batch} }}
"""
Printer = Callable[[str], None]


def describe(body: dict[str, Any]) -> str:
    """One progress line from a ``GET /runs/<id>`` body."""
    if "counts" in body and "inputs" in body:
        counts = " ".join(f"{k}={v}" for k, v in body["counts"].items() if v)
        return f"finished: {counts}"
    items, files = body.get("items", {}), body.get("files", {})
    return (
        f"{body.get('status')}: items done={items.get('done')} failed={items.get('failed')} "
        f"pending={items.get('pending')} | files written={files.get('written')} "
        f"failed={files.get('failed')}"
    )


def watch(get_run: Callable[[], dict[str, Any]], printer: Printer, timeout: float) -> dict:
    """Poll until the manifest exists, printing each change; returns the manifest."""
    deadline, last = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        body = get_run()
        line = describe(body)
        if line != last:
            printer(line)
            last = line
        if "inputs" in body and "counts" in body:
            return body
        time.sleep(0.5)
    raise TimeoutError(f"the run did not finish within {timeout}s")


def run_aws(drive: DriveEmulator, workers: int, batch: int, printer: Printer) -> dict:
    """The AWS path: moto S3 + SQS, the Chalice app in process, SQS pumps as Lambda."""
    from chalice.test import Client

    from devstack.aws_dev import load_app
    from devstack.servers import MotoServer
    from devstack.sqs_pump import SqsEventSources, create_fanout_queues

    with MotoServer() as moto, tempfile.TemporaryDirectory() as scratch:
        config = Path(scratch) / "drivepipe.toml"
        config.write_text(CONFIG.format(scheme="s3", batch=batch), encoding="utf-8")
        sqs = moto.client("sqs")
        queues = create_fanout_queues(sqs, "drivepipe-work-local", max_receive_count=3)
        os.environ.update(
            {
                **moto.env(),
                **queues,
                "DRIVE_API_URL": drive.url,
                "DRIVE_ACCESS_TOKEN": "local-dev",
                "DRIVE_FOLDER_ID": drive.root_id,
                "DRIVEPIPE_CONFIG": str(config),
                "DRIVEPIPE_INPUT_BUCKET": moto.create_bucket("drivepipe-in-local"),
                "DRIVEPIPE_OUTPUT_BUCKET": moto.create_bucket("drivepipe-out-local"),
                "DRIVEPIPE_HTTP_AUTH": "none",
                "DRIVEPIPE_PUBLIC": "true",
                "DRIVEPIPE_FANOUT_MAX_CONCURRENCY": str(workers),  # the worker's pollers
            }
        )
        app = load_app().app
        client = Client(app, project_dir=scratch)
        with SqsEventSources(app, sqs) as sources:
            printer(f"moto_server {moto.url}")
            for mapping in sources.mappings:
                printer(f"pumping {mapping.describe()}")
            answer = client.http.post(
                "/sync",
                headers={"Content-Type": "application/json"},
                body=json.dumps({"pipeline": "bulk"}),
            )
            started = json.loads(answer.body)
            printer(f"POST /sync -> {answer.status_code} {json.dumps(started)}")
            if answer.status_code != 202:
                return dict(started)

            def get_run() -> dict[str, Any]:
                return dict(client.http.get(started["progress"]).json_body)

            return watch(get_run, printer, timeout=600)


def run_gcp(drive: DriveEmulator, workers: int, batch: int, printer: Printer) -> dict:
    """The GCP path: gcs emulator, functions-framework processes, the Pub/Sub stand-in."""
    import requests

    from devstack.gcp_dev import FunctionServer, start_all, storage_client
    from devstack.pubsub_local import PubSubStandIn, Subscription
    from devstack.servers import GcsEmulator

    work, dead = "projects/local/topics/drivepipe-work", "projects/local/topics/drivepipe-dead"
    with contextlib.ExitStack() as stack:
        scratch = stack.enter_context(tempfile.TemporaryDirectory())
        gcs = stack.enter_context(GcsEmulator())
        pubsub = stack.enter_context(PubSubStandIn(max_instances=workers))
        client = storage_client(gcs.url)
        for bucket in ("drivepipe-in", "drivepipe-out"):
            client.create_bucket(bucket)
        config = Path(scratch) / "drivepipe.toml"
        config.write_text(CONFIG.format(scheme="gs", batch=batch), encoding="utf-8")
        env = {
            "DRIVEPIPE_CONFIG": str(config),
            "STORAGE_EMULATOR_HOST": gcs.url,
            "GOOGLE_CLOUD_PROJECT": "local",
            "DRIVE_API_URL": drive.url,
            "DRIVE_ACCESS_TOKEN": "local-dev",
            "DRIVE_FOLDER_ID": drive.root_id,
            "DRIVEPIPE_INPUT_BUCKET": "drivepipe-in",
            "DRIVEPIPE_OUTPUT_BUCKET": "drivepipe-out",
            "DRIVEPIPE_FANOUT_TOPIC": work,
            "PUBSUB_EMULATOR_HOST": pubsub.host,
        }
        servers = {
            t: FunctionServer(t, env) for t in ("sync_http", "fanout_worker", "fanout_dead_letter")
        }
        start_all(servers.values())
        for server in servers.values():
            stack.callback(server.stop)
        pubsub.subscribe(Subscription(work, servers["fanout_worker"].url, 5, dead))
        pubsub.subscribe(Subscription(dead, servers["fanout_dead_letter"].url))
        printer(
            f"gcs {gcs.url}; pubsub stand-in {pubsub.host}; sync_http {servers['sync_http'].url}"
        )
        base = servers["sync_http"].url
        answer = requests.post(f"{base}/sync", data='{"pipeline": "bulk"}', timeout=120)
        printer(f"POST /sync -> {answer.status_code} {answer.text.strip()}")
        if answer.status_code != 202:
            return dict(answer.json())
        progress = answer.json()["progress"]
        return watch(lambda: requests.get(base + progress, timeout=60).json(), printer, 600)


@contextlib.contextmanager
def drive_folder(root: Path | None, files: int, latency: float) -> Iterator[DriveEmulator]:
    """The Drive emulator over ``root``, or over ``files`` generated small CSVs."""
    with tempfile.TemporaryDirectory(prefix="fanout-drive-") as scratch:
        if root is None:
            root = Path(scratch)
            generate_tree(root, files, min_size=256, max_size=2048, depth=2, fanout=8, seed=3)
        with DriveEmulator(root, faults=FaultConfig(latency_s=latency)) as drive:
            yield drive


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.fanout_dev",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("cloud", choices=("aws", "gcp"))
    parser.add_argument("--files", type=int, default=300, help="files to generate")
    parser.add_argument("--drive-root", type=Path, help="serve this folder instead")
    parser.add_argument("--workers", type=int, default=4, help="concurrent worker instances")
    parser.add_argument("--batch-size", type=int, default=10, help="files per work item")
    parser.add_argument("--latency", type=float, default=0.0, help="Drive seconds/request")
    args = parser.parse_args(argv)

    def printer(line: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)

    began = time.monotonic()
    with drive_folder(args.drive_root, args.files, args.latency) as drive:
        printer(f"drive emulator {drive.url} (folder {drive.root_id})")
        runner = run_aws if args.cloud == "aws" else run_gcp
        manifest = runner(drive, args.workers, args.batch_size, printer)
    failed = [r for r in manifest.get("inputs", []) if r.get("status") == "failed"]
    for record in failed[:10]:
        printer(f"failed: {record['path']}: {record['error']}")
    printer(f"done in {time.monotonic() - began:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
