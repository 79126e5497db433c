"""``drivepipe demo``: the main job on the local default stack, start to finish.

Starts the Drive API emulator over the bundled sample folder, moto_server (S3) and
gcp-storage-emulator (GCS) on 127.0.0.1, runs the demo pipelines into both buckets, prints
the outputs and manifest summaries (the malformed sample shows up as quarantined, and the
notification it caused on an SNS topic and a Slack-compatible webhook), re-runs to show
incremental skipping, lists the run history, and stops everything it started.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from devstack.notify_local import SnsInbox, print_notification
from devstack.webhook_receiver import WebhookReceiver
from shared.log import configure

SAMPLES = Path(__file__).parent / "samples"
DEMO_CONFIG = SAMPLES / "demo.toml"
DEMO_BUCKET = "drivepipe-demo"
EXPECTED_FAILURES = ("broken/",)  # the deliberately malformed samples


@contextmanager
def patched_env(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of the block."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def start_stack(stack: ExitStack, drive_root: Path) -> tuple[dict[str, str], SnsInbox]:
    """Start the local servers; returns the environment that points at them, and the SNS
    topic's inbox (an SQS subscriber) the demo's notifications reach."""
    from devstack.drive_emulator import DriveEmulator
    from devstack.servers import GcsEmulator, MotoServer

    print("starting the local stack on 127.0.0.1 …", flush=True)
    drive = stack.enter_context(DriveEmulator(drive_root))
    s3 = stack.enter_context(MotoServer())
    gcs = stack.enter_context(GcsEmulator())
    s3.create_bucket(DEMO_BUCKET)
    gcs.create_bucket(DEMO_BUCKET)
    alerts = SnsInbox(s3.client("sns"), s3.client("sqs"))
    hook = stack.enter_context(WebhookReceiver(on_message=_print_slack))
    print(f"  Drive API v3 emulator  {drive.url}  (folder {drive.root_id} = {drive_root})")
    print(f"  S3  (moto_server)      {s3.url}")
    print(f"  GCS (storage emulator) {gcs.url}")
    return {
        **s3.env(),
        **gcs.env(),
        "DRIVE_API_URL": drive.url,
        "DRIVE_ACCESS_TOKEN": "local-demo-token",
        "DEMO_FOLDER_ID": drive.root_id,
        "DEMO_BUCKET": DEMO_BUCKET,
        "DEMO_SNS_TOPIC": alerts.topic_arn,
        "DEMO_WEBHOOK_URL": hook.url,
        "DRIVEPIPE_NOTIFY_BACKOFF_SECONDS": "0.2",
    }, alerts


def _print_slack(body: object) -> None:
    text = body.get("text") if isinstance(body, dict) else body
    print(f"  notification via webhook (Slack): {text}")


def show_notifications(inbox: SnsInbox | None) -> None:
    """Print what the SNS topic's subscribers got since the last call."""
    for event in inbox.drain() if inbox else []:
        print_notification(f"SNS {inbox.topic_arn} (what an e-mail subscriber reads)", event)


def show_outputs(url: str) -> None:
    """List a destination and preview the first data output as a table."""
    import pandas as pd

    from shared.storage import open_storage

    storage = open_storage(url)
    objects = list(storage.list())
    print(f"\noutputs in {url}:")
    for info in objects:
        print(f"  {info.size:>8,} B  {info.key}")
    data = [o for o in objects if o.key.endswith(".parquet") and not o.key.startswith("_")]
    if data:
        frame = pd.read_parquet(io.BytesIO(storage.read(data[0].key)))
        print(f"\npreview of {data[0].key} ({len(frame)} rows):")
        print(frame.head(5).to_string(index=False))


def run_demo(config_path: Path, inbox: SnsInbox | None = None) -> int:
    """Run every pipeline in the demo config twice; 0 when only the expected samples failed."""
    from shared.cli import Reporter, print_summary
    from shared.cli import main as run_cli
    from shared.config import load_config
    from shared.run.sync import SyncRequest, run_sync

    cfg = load_config(config_path)
    unexpected: list[str] = []
    for name, pipeline in cfg.pipelines.items():
        print(f"\n== pipeline {name}: Drive folder → {pipeline.output.url}")
        reporter = Reporter(quiet=not sys.stderr.isatty())  # the summary lists every input
        try:
            manifest = run_sync(SyncRequest(pipeline=pipeline, trigger="demo"), progress=reporter)
        finally:
            reporter.close()
        print_summary(manifest, as_json=False)
        unexpected += [r.path for r in manifest.failed if not r.path.startswith(EXPECTED_FAILURES)]
        for record in manifest.failed:
            print(
                f"  quarantined: {record.path} → {record.quarantine_key}\n    why: {record.error}"
            )
        show_notifications(inbox)
        show_outputs(pipeline.output.url)
    print("\n== re-run: unchanged files are skipped by the incremental state")
    for name, pipeline in cfg.pipelines.items():
        manifest = run_sync(SyncRequest(pipeline=pipeline, trigger="demo"))
        counts = ", ".join(f"{k}={v}" for k, v in manifest.counts().items() if v)
        print(f"  {name}: {counts}")
    if inbox:
        inbox.drain()  # the re-run's: the same broken file, reported again
    print("\n== run history, newest first (drivepipe runs list --dest URL)")
    for name, pipeline in cfg.pipelines.items():
        print(f"-- {name}: {pipeline.output.url}")
        run_cli(["runs", "list", "--dest", pipeline.output.url, "--limit", "5"])
    if unexpected:
        print(f"\nunexpected failures: {', '.join(unexpected)}", file=sys.stderr)
        return 1
    print("\ndemo finished: outputs written to S3 and GCS; the malformed sample is quarantined.")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``drivepipe demo``."""
    parser = argparse.ArgumentParser(prog="drivepipe demo", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--drive-root",
        type=Path,
        default=SAMPLES / "drive",
        help="folder the Drive emulator serves (default: bundled samples)",
    )
    parser.add_argument("--config", type=Path, default=DEMO_CONFIG, help="pipeline TOML file")
    parser.add_argument("--log-level", default="WARNING", help="drivepipe log level")
    args = parser.parse_args(argv)
    configure(args.log_level)
    with ExitStack() as stack:
        env, inbox = start_stack(stack, args.drive_root)
        with patched_env(env):
            code = run_demo(args.config, inbox)
        print("stopping the local stack …")
    return code


if __name__ == "__main__":
    sys.exit(main())
