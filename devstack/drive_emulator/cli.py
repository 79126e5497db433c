"""`python -m devstack.drive_emulator`: serve a folder until Ctrl-C."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from pathlib import Path

from devstack.drive_emulator.emulator import DEFAULT_EXPORT_LIMIT, DriveEmulator
from devstack.drive_emulator.faults import INCOMPLETE_BATCH_MODES, FaultConfig
from devstack.drive_emulator.tree import TreeError

SAMPLES = Path(__file__).resolve().parent.parent / "samples" / "drive"


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    parser = argparse.ArgumentParser(
        prog="python -m devstack.drive_emulator",
        description="Serve a local directory as a Google Drive API v3 folder on 127.0.0.1.",
    )
    parser.add_argument("--root", type=Path, default=SAMPLES, help="folder to serve")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--root-id", default=None, help="id of the root folder")
    parser.add_argument("--drive-id", default=None, help="serve the tree as this shared drive")
    parser.add_argument("--page-size-cap", type=int, default=None, help="short pages")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="chance of a fault")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added per request")
    parser.add_argument("--bandwidth", type=float, default=None, help="media bytes/second cap")
    parser.add_argument("--qps", type=float, default=None, help="token-bucket request limit")
    parser.add_argument(
        "--incomplete-batches",
        choices=INCOMPLETE_BATCH_MODES,
        default=None,
        help="multi-parent files.list answers for one parent only (rclone #3114)",
    )
    parser.add_argument("--seed", type=int, default=None, help="fault random seed")
    parser.add_argument("--export-limit", type=int, default=DEFAULT_EXPORT_LIMIT, help="bytes")
    parser.add_argument("--api-key", action="append", default=None, help="accepted API key")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the emulator in the foreground; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        faults = FaultConfig(
            rate=args.fault_rate,
            latency_s=args.latency,
            bandwidth_bps=args.bandwidth,
            rate_limit_qps=args.qps,
            incomplete_batches=args.incomplete_batches,
            seed=args.seed,
        )
        emulator = DriveEmulator(
            args.root,
            host=args.host,
            port=args.port,
            root_id=args.root_id,
            drive_id=args.drive_id,
            page_size_cap=args.page_size_cap,
            faults=faults,
            export_limit_bytes=args.export_limit,
            api_keys=args.api_key,
        )
    except (TreeError, ValueError) as exc:
        print(f"drive emulator: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with emulator:
        print(f"Drive emulator serving {emulator.tree.root}", flush=True)
        print(f"DRIVE_API_URL={emulator.url}", flush=True)
        print(f"DRIVE_ROOT_ID={emulator.root_id}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    return 0
