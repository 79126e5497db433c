"""``drivepipe runs list | show | reindex``: the run history of a destination.

The destination is ``--dest URL``, or the ``--pipeline``'s output in ``--config`` (every
pipeline's, merged newest first, when the file has several and none is named). On a terminal
the output is a rich table (plain columns without rich); ``--json`` prints JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from shared.errors import ConfigError

if TYPE_CHECKING:
    from shared.run.history import RunPage

EXIT_OK, EXIT_NOT_FOUND = 0, 2


def add_parser(sub: Any) -> None:
    """Add ``runs`` and its three commands to the CLI's subparsers."""
    from shared.run.history import DEFAULT_LIMIT, MAX_LIMIT, RUN_STATUSES

    runs = sub.add_parser("runs", help="list and show past runs of a destination")
    commands = runs.add_subparsers(dest="runs_command", required=True)
    listing = commands.add_parser("list", help="runs, newest first")
    _where(listing)
    listing.add_argument("--status", choices=RUN_STATUSES, help="failed: an input failed")
    listing.add_argument(
        "--limit", type=_limit(MAX_LIMIT), default=DEFAULT_LIMIT, help=f"at most {MAX_LIMIT}"
    )
    listing.add_argument("--cursor", type=_run_id, help="the next_cursor of the previous page")
    show = commands.add_parser("show", help="one run's manifest")
    show.add_argument("run_id", type=_run_id)
    _where(show)
    reindex = commands.add_parser("reindex", help="index manifests written before the index")
    _where(reindex)


def _where(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dest", help="s3://bucket/prefix, gs://bucket/prefix, or a directory")
    parser.add_argument("--config", help="pipeline TOML file (its pipelines' destinations)")
    parser.add_argument("--pipeline", help="only this pipeline's runs")
    parser.add_argument("--json", action="store_true", help="print JSON")


def _limit(ceiling: int) -> Any:
    def parse(value: str) -> int:
        if not value.isdigit() or not 1 <= int(value) <= ceiling:
            raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {ceiling}")
        return int(value)

    return parse


def _run_id(value: str) -> str:
    from shared.run.manifest import RUN_ID_PATTERN

    if not RUN_ID_PATTERN.match(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a run id (20261122T001530Z-1a2b3c4d)")
    return value


def destinations(args: argparse.Namespace) -> list[str]:
    """The destination URLs the command reads."""
    if args.dest:
        return [args.dest]
    if not args.config:
        raise ConfigError("give --dest URL, or --config FILE (with --pipeline NAME)")
    from shared.config import load_config

    cfg = load_config(args.config)
    if args.pipeline:
        pipeline = cfg.get(args.pipeline)
        if pipeline is None:
            raise ConfigError(f"pipeline '{args.pipeline}' is not defined in {args.config}")
        return [pipeline.output.url]
    return sorted({p.output.url for p in cfg.pipelines.values()})


def cmd_runs(args: argparse.Namespace) -> int:
    """Run ``runs list``, ``runs show`` or ``runs reindex``."""
    from shared.storage import open_storage

    stores = [open_storage(url) for url in destinations(args)]
    if args.runs_command == "list":
        from shared.run.history import list_runs, merge_pages

        pages = [
            list_runs(
                dest,
                pipeline=args.pipeline,
                status=args.status,
                limit=args.limit,
                cursor=args.cursor,
            )
            for dest in stores
        ]
        page = pages[0] if len(pages) == 1 else merge_pages(pages, args.limit)
        if args.json:
            print(json.dumps(page.to_dict(), indent=2, ensure_ascii=False))
        else:
            print_page(page)
        return EXIT_OK
    if args.runs_command == "show":
        return _show(stores, args.run_id, args.json)
    from shared.run.history import reindex

    for dest in stores:
        written = reindex(dest)
        print(f"{dest.base_url}: indexed {written} run(s) that had no index entry")
    return EXIT_OK


def _show(stores: list[Any], run_id: str, as_json: bool) -> int:
    from shared.run.fanout.progress import progress
    from shared.run.history import read_manifest

    for dest in stores:
        found = read_manifest(dest, run_id) or progress(dest, run_id)
        if found is None:
            continue
        if as_json:
            print(json.dumps(found, indent=2, ensure_ascii=False))
        else:
            print_manifest(found)
        return EXIT_OK
    where = ", ".join(dest.base_url for dest in stores)
    print(f"drivepipe: no run {run_id} in {where}", file=sys.stderr)
    return EXIT_NOT_FOUND


def _duration(entry: dict[str, Any]) -> str:
    from datetime import datetime

    start, end = entry.get("started_at"), entry.get("ended_at")
    if not start or not end:
        return ""
    seconds = (
        datetime.fromisoformat(end.replace("Z", "+00:00"))
        - datetime.fromisoformat(start.replace("Z", "+00:00"))
    ).total_seconds()
    return f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.1f}m"


COLUMNS = ("run id", "pipeline", "trigger", "status", "started", "took", "written", "failed")


def _row(entry: dict[str, Any]) -> list[str]:
    counts = entry.get("counts") or {}
    return [
        entry["run_id"],
        str(entry.get("pipeline") or ""),
        str(entry.get("trigger") or ""),
        entry.get("status") or "",
        (entry.get("started_at") or "")[:19].replace("T", " "),
        _duration(entry),
        str(counts.get("written", 0)),
        str(counts.get("failed", 0)),
    ]


def _rich_console() -> Any:
    if not sys.stdout.isatty():
        return None
    try:
        from rich.console import Console
    except ImportError:
        return None
    return Console()


def print_page(page: RunPage) -> None:
    """The page as a table; the next page's command hint when there is one."""
    rows = [_row(entry) for entry in page.runs]
    console = _rich_console()
    if console is not None:
        from rich.table import Table

        table = Table(*COLUMNS)
        styles = {"failed": "red", "blocked": "yellow"}
        for row in rows:
            table.add_row(*row, style=styles.get(row[3]))
        console.print(table)
    else:
        widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(COLUMNS)]
        print("  ".join(c.upper().ljust(w) for c, w in zip(COLUMNS, widths, strict=True)))
        for row in rows:
            print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    if not rows:
        print("no runs")
    if page.next_cursor:
        print(f"more: --cursor {page.next_cursor}")


def print_manifest(manifest: dict[str, Any]) -> None:
    """A manifest (or a fan-out run's progress) for a terminal."""
    counts = manifest.get("counts") or {}
    shown = ", ".join(f"{k}={v}" for k, v in counts.items() if v) or "no inputs"
    print(f"run {manifest.get('run_id')} [{manifest.get('pipeline')}] {shown}")
    for key in ("trigger", "started_at", "ended_at", "destination", "removals_blocked"):
        if manifest.get(key):
            print(f"  {key}: {manifest[key]}")
    for record in manifest.get("inputs") or []:
        target = ", ".join(record.get("output_keys") or []) or record.get("error") or ""
        print(f"  {record.get('status', ''):<19} {record.get('path')}  {target}")
        if record.get("quarantine_key"):
            print(f"  {'':<19} quarantined at {record['quarantine_key']}")
    for sent in manifest.get("notifications") or []:
        outcome = "sent" if sent.get("ok") else f"NOT delivered ({sent.get('error')})"
        print(f"  notified {sent.get('target')} {sent.get('to')}: {outcome}")
