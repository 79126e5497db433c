"""``drivepipe watch start|stop|status --pipeline P``: a pipeline's Drive notification channel.

``start`` opens the channel (or keeps a healthy one; ``--force`` replaces it), ``stop`` closes
every channel of the pipeline, ``status`` shows the record kept in the destination, whether a
sync is owed, and what the schedule will do next. The token is never printed: only its
reference in the secret store.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.errors import ConfigError
from shared.settings import runtime_settings

if TYPE_CHECKING:
    from shared.config import Pipeline

ACTIONS = ("start", "stop", "status")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The watch command's own options (the pipeline options come from the core CLI)."""
    parser.add_argument("action", choices=ACTIONS, help="open, close or show the channel")
    parser.add_argument(
        "--address", help="the webhook's public URL (default: $DRIVEPIPE_PUSH_ADDRESS)"
    )
    parser.add_argument("--force", action="store_true", help="start: replace a healthy channel")


def run(args: argparse.Namespace, pipeline: Pipeline) -> int:
    """Do the action; prints a line (or JSON with ``--json``). Exit 1 when another process
    was changing the channel."""
    from shared.run import channels
    from shared.storage import open_storage

    if args.action == "start" and not pipeline.push:
        raise ConfigError(f"pipelines.{pipeline.name}.push is not true; set it to watch Drive")
    dest = open_storage(pipeline.output.url)
    if args.action == "status":
        report = status(pipeline, dest, address=args.address)
        print(json.dumps(report, indent=2) if args.json else _status_text(report))
        return 0
    watcher = channels.Watcher(pipeline, dest, drive=_drive(), address=args.address)
    if args.action == "start":
        outcome = channels.start(watcher, force=args.force)
    else:
        outcome = channels.stop(watcher)
    if args.json:
        print(json.dumps(outcome.to_dict(), indent=2))
    else:
        where = (
            f" {outcome.channel['id']} until {outcome.channel['expires_at']}"
            if outcome.channel
            else ""
        )
        print(f"{pipeline.name}: {outcome.action}{where} ({outcome.reason})")
    return 1 if outcome.action == "busy" else 0


def status(pipeline: Pipeline, dest: Any, *, address: str | None = None) -> dict[str, Any]:
    """The channel record, the last notification, whether a sync is owed, and what is due."""
    from shared.run import channels, pending

    now = time.time()
    settings = runtime_settings()
    address = address or settings.push_address
    record = channels.ChannelRecord.load(dest, pipeline.name)
    request = pending.requested(dest, pipeline.name)
    renew_before = settings.channel_renew_hours * 3600
    due = channels.due(record, address=address, now=now, renew_before=renew_before)
    return {
        "pipeline": pipeline.name,
        "push": pipeline.push,
        "address": address,
        "channel": record.current.describe(now) if record.current else None,
        "retiring": [c.describe(now) for c in record.retiring],
        "last_notification": _iso(request.at) if request else None,
        "sync_owed": pending.owed(dest, pipeline.name) is not None,
        "due": {"action": due[0], "reason": due[1]} if due else None,
    }


def _status_text(report: dict[str, Any]) -> str:
    lines = [f"{report['pipeline']}: push {'on' if report['push'] else 'off'}"]
    lines.append(f"  address   {report['address'] or '(DRIVEPIPE_PUSH_ADDRESS not set)'}")
    channel = report["channel"]
    if channel:
        lines.append(
            f"  channel   {channel['id']} expires {channel['expires_at']} "
            f"(in {channel['expires_in_hours']} h) -> {channel['address']}"
        )
        lines.append(f"  token     {channel['token_ref']} (a reference; never the token)")
    else:
        lines.append("  channel   none open")
    for old in report["retiring"]:
        lines.append(f"  retiring  {old['id']} (to stop)")
    lines.append(f"  last notification {report['last_notification'] or 'none'}")
    lines.append(f"  sync owed {'yes' if report['sync_owed'] else 'no'}")
    due = report["due"]
    lines.append(
        f"  next      {due['action']}: {due['reason']}" if due else "  next      nothing due"
    )
    return "\n".join(lines)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _drive() -> Any:
    from shared.drive import DriveClient
    from shared.secrets import load_into_env

    load_into_env()
    return DriveClient.from_env()
