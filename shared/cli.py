"""The drivepipe command line: sync, transform, validate, schema, watch, and the run history
(``runs``).

Exit codes: 0 success, 1 some input failed, 2 bad usage or configuration, 3 a source or
destination could not be reached.

``drivepipe sync`` is the pipeline owner's tool: whoever runs it holds the pipelines file and
the credentials, so it takes every override (``--since``, ``--dry-run``, ``--full-refresh``,
``--force-removals``, ``--dest``) without ``allow_overrides``, which governs remote callers
(``POST /sync``, request files). A ``--folder`` other than the pipeline's still never writes
over the pipeline's outputs: it syncs into ``<destination>/_folders/<id>/`` with its own state.

The local tools (``drivepipe emulator``, ``demo``, ``dev``) are not part of the core: the
``drivepipe`` console script is ``devstack.cli:main``, which hands them to :func:`main` as
*delegates*, commands that parse everything after their own name.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.errors import (
    ConfigError,
    DriveAuthError,
    DriveError,
    DrivepipeError,
    RetryableError,
    StorageError,
)
from shared.log import LOG_LEVELS, configure

if TYPE_CHECKING:
    from shared.config import Output, Pipeline
    from shared.run.manifest import InputRecord, RunManifest

EXIT_OK, EXIT_FAILED_INPUTS, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


class Delegate:
    """A command whose own tool parses everything after the command word."""

    def __init__(self, help: str, run: Callable[[list[str]], int]) -> None:
        self.help = help
        self.run = run


def _timestamp(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {value!r}") from None


def _log_level(value: str) -> str:
    name = value.upper()
    if name not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"{value!r} is not one of {', '.join(LOG_LEVELS)}")
    return name


def _add_global_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-level",
        type=_log_level,
        default=None,
        help="DEBUG, INFO, WARNING or ERROR (default INFO; before the command)",
    )


def build_parser(delegates: Mapping[str, Delegate] | None = None) -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs); ``delegates`` are listed in its help."""
    parser = argparse.ArgumentParser(prog="drivepipe", description=__doc__.splitlines()[0])
    _add_global_options(parser)
    sub = parser.add_subparsers(dest="command", required=True)

    sync = sub.add_parser("sync", help="sync a Drive folder into a destination")
    _pipeline_args(sync)
    sync.add_argument(
        "--folder",
        help="Drive folder id; with --config, another folder than the pipeline's syncs with "
        "its own state and outputs under the destination (unless in source.alias_folder_ids)",
    )
    sync.add_argument("--since", type=_timestamp, help="only files modified after this time")
    sync.add_argument("--concurrency", type=int, help="Drive requests in flight (default 16)")
    sync.add_argument("--include", action="append", default=[], help="glob on the relative path")
    sync.add_argument("--exclude", action="append", default=[], help="glob on the relative path")
    sync.add_argument("--dry-run", action="store_true", help="list and plan, write nothing")
    sync.add_argument("--full-refresh", action="store_true", help="ignore the incremental state")
    sync.add_argument(
        "--force-removals",
        action="store_true",
        help="remove the outputs of inputs gone from Drive even past the removal guard",
    )

    transform = sub.add_parser("transform", help="run a pipeline on one file, local or in a bucket")
    transform.add_argument("source", help="path, file://, s3://bucket/key or gs://bucket/key")
    _pipeline_args(transform)

    validate = sub.add_parser("validate", help="load and validate a pipeline file")
    validate.add_argument("config", help="pipeline TOML file")

    schema = sub.add_parser("schema", help="a pipeline's tables: columns, versions, history")
    schema.add_argument("action", choices=["show", "diff"], help="show the tables, or a change")
    _pipeline_args(schema)
    schema.add_argument("--from", dest="since", type=int, help="diff: from this version")
    schema.add_argument("--to", dest="upto", type=int, help="diff: to this version (latest)")

    from shared import cli_watch

    watch = sub.add_parser("watch", help="open, close or show a pipeline's Drive push channel")
    cli_watch.add_arguments(watch)
    _pipeline_args(watch)

    from shared import cli_runs

    cli_runs.add_parser(sub)

    for name, delegate in (delegates or {}).items():
        sub.add_parser(name, help=delegate.help, add_help=False)
    return parser


def _pipeline_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dest", help="s3://bucket/prefix, gs://bucket/prefix, or a directory")
    parser.add_argument("--config", help="pipeline TOML file")
    parser.add_argument("--pipeline", help="pipeline name in --config")
    parser.add_argument("--format", choices=["parquet", "csv", "jsonl"], help="output format")
    parser.add_argument("--json", action="store_true", help="print the manifest summary as JSON")


def resolve_pipeline(args: argparse.Namespace) -> Pipeline:
    """The pipeline from ``--config/--pipeline``, or an ad-hoc one from the flags."""
    from shared.config import adhoc_pipeline, load_config

    if args.config:
        cfg = load_config(args.config)
        name = args.pipeline or (next(iter(cfg.pipelines)) if len(cfg.pipelines) == 1 else None)
        if name is None:
            raise ConfigError(
                f"--pipeline is required: {args.config} defines {', '.join(sorted(cfg.pipelines))}"
            )
        pipeline = cfg.get(name)
        if pipeline is None:
            raise ConfigError(f"pipeline '{name}' is not defined in {args.config}")
        output: dict[str, Any] = {}
        if args.dest:
            output["url"] = args.dest
        if args.format:
            output["format"] = args.format
        if output:
            pipeline = pipeline.model_copy(
                update={"output": _override_output(pipeline.output, output)}
            )
        return pipeline
    if not args.dest:
        raise ConfigError("--dest is required without --config")
    return adhoc_pipeline(
        output_url=args.dest,
        output_format=args.format or "parquet",
        include=tuple(getattr(args, "include", ())),
        exclude=tuple(getattr(args, "exclude", ())),
    )


def _override_output(current: Output, changes: dict[str, Any]) -> Output:
    """``current`` with the ``--dest`` / ``--format`` values, validated like the file's."""
    from pydantic import ValidationError

    from shared.config import Output

    try:
        return Output.model_validate({**current.model_dump(), **changes})
    except ValidationError as exc:
        problems = [
            f"{'--dest' if err['loc'][:1] == ('url',) else '--format'}: "
            + err["msg"].removeprefix("Value error, ")
            for err in exc.errors()
        ]
        raise ConfigError("; ".join(problems)) from None


class Reporter:
    """Progress on stderr: a rich progress bar on a terminal, a line per input otherwise."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar: Any = None
        self.task: Any = None
        if not quiet and sys.stderr.isatty():
            try:
                from rich.progress import Progress
            except ImportError:
                return
            self.bar = Progress(transient=True)
            self.bar.start()
            self.task = self.bar.add_task("syncing", total=None)

    def __call__(self, record: InputRecord, done: int, total: int) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=done, total=total, description=record.path[-40:])
        elif not self.quiet:
            print(f"[{done}/{total}] {record.status:<19} {record.path}", file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def print_summary(manifest: RunManifest, as_json: bool) -> None:
    """The end-of-run summary on stdout."""
    summary = manifest.summary()
    if as_json:
        print(json.dumps(summary, indent=2, ensure_ascii=False))
        return
    counts = ", ".join(f"{k}={v}" for k, v in summary["counts"].items())
    print(f"run {manifest.run_id} [{manifest.pipeline}] {counts}")
    for record in manifest.inputs:
        target = ", ".join(record.output_keys) or record.error or ""
        print(f"  {record.status:<19} {record.path}  {target}")
    for entry in manifest.catalog:
        detail = entry.get("error") or ", ".join(entry.get("actions") or []) or ""
        print(f"  catalog {entry['catalog']} {entry['table']}: {entry['status']} {detail}".rstrip())
    if summary["manifest"]:
        print(f"manifest: {summary['manifest']}")


def cmd_sync(args: argparse.Namespace) -> int:
    from shared.run.sync import SyncRequest, run_sync

    pipeline = resolve_pipeline(args)
    if args.concurrency:
        pipeline = pipeline.model_copy(update={"concurrency": args.concurrency})
    narrowed = None
    if args.config and (args.include or args.exclude):
        narrowed = "listing narrowed by --include / --exclude"
        source = pipeline.source.model_copy(
            update={
                "include": tuple(args.include) or pipeline.source.include,
                "exclude": tuple(args.exclude) or pipeline.source.exclude,
            }
        )
        pipeline = pipeline.model_copy(update={"source": source})
    request = SyncRequest(
        pipeline=pipeline,
        trigger="cli",
        folder_id=args.folder,
        since=args.since,
        full_refresh=args.full_refresh,
        dry_run=args.dry_run,
        force_removals=args.force_removals,
        listing_narrowed=narrowed,
    )
    reporter = Reporter(quiet=args.json)
    try:
        manifest = run_sync(request, progress=reporter)
    finally:
        reporter.close()
    print_summary(manifest, args.json)
    return EXIT_FAILED_INPUTS if manifest.failed or manifest.catalog_failed else EXIT_OK


def split_source(source: str) -> tuple[str, str]:
    """``s3://b/dir/x.csv`` → (``s3://b/dir``, ``x.csv``); a local path likewise."""
    from pathlib import Path

    if source.startswith(("s3://", "gs://")):
        head, _, name = source.rpartition("/")
        if head.count("/") < 2 or not name:
            raise ConfigError(f"source must name an object: {source}")
        return head, name
    path = Path(source.removeprefix("file://")).resolve()
    if not path.is_file():
        raise ConfigError(f"source file not found: {source}")
    return str(path.parent), path.name


def cmd_transform(args: argparse.Namespace) -> int:
    from shared.run.single import ObjectRequest, run_object

    pipeline = resolve_pipeline(args)
    source_url, relpath = split_source(args.source)
    manifest = run_object(
        ObjectRequest(pipeline=pipeline, source_url=source_url, relpath=relpath, trigger="cli")
    )
    print_summary(manifest, args.json)
    return EXIT_FAILED_INPUTS if manifest.failed else EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    from shared.config import load_config

    cfg = load_config(args.config)
    for name, pipeline in cfg.pipelines.items():
        steps = len(pipeline.steps)
        print(f"{name}: {steps} steps → {pipeline.output.url} ({pipeline.output.format})")
    return EXIT_OK


def cmd_watch(args: argparse.Namespace) -> int:
    from shared import cli_watch

    return cli_watch.run(args, resolve_pipeline(args))


def cmd_schema(args: argparse.Namespace) -> int:
    from shared.run.engine import open_store
    from shared.run.tables.show import diff_lines, show_lines
    from shared.run.tables.store import SchemaStore

    pipeline = resolve_pipeline(args)
    dest = open_store(pipeline.output.url, "destination")
    doc = SchemaStore(dest, pipeline.name).read()
    if args.json:
        print(doc.to_json().decode())
        return EXIT_OK
    lines = show_lines(doc, dest.base_url) if args.action == "show" else None
    print("\n".join(lines or diff_lines(doc, args.since, args.upto)))
    return EXIT_OK


def _command_index(argv: list[str]) -> int | None:
    """Position of the command word, after the global options (``--log-level X``)."""
    index = 0
    while index < len(argv) and argv[index].startswith("-"):
        if argv[index] in ("-h", "--help"):
            return None
        index += 2 if argv[index] == "--log-level" else 1
    return index if index < len(argv) else None


def _configure_logging(level: str | None) -> bool:
    """Set up logging; False (after saying why) when the level is not a log level."""
    try:
        configure(level)
    except ConfigError as exc:
        print(f"drivepipe: configuration error: {exc}", file=sys.stderr)
        return False
    return True


def main(argv: list[str] | None = None, *, delegates: Mapping[str, Delegate] | None = None) -> int:
    """Run one command; ``delegates`` adds commands that parse their own arguments."""
    argv = list(sys.argv[1:] if argv is None else argv)
    delegates = delegates or {}
    index = _command_index(argv)
    if index is not None and argv[index] in delegates:
        # The dev tools own their flags; hand them everything after the command word.
        global_parser = argparse.ArgumentParser(prog="drivepipe", add_help=False)
        _add_global_options(global_parser)
        level = global_parser.parse_args(argv[:index]).log_level
        if not _configure_logging(level):
            return EXIT_USAGE
        return delegates[argv[index]].run(argv[index + 1 :])
    args = build_parser(delegates).parse_args(argv)
    if not _configure_logging(args.log_level):
        return EXIT_USAGE
    from shared.cli_runs import cmd_runs

    handlers = {
        "sync": cmd_sync,
        "transform": cmd_transform,
        "validate": cmd_validate,
        "watch": cmd_watch,
        "runs": cmd_runs,
        "schema": cmd_schema,
    }
    try:
        return handlers[args.command](args)
    except (ConfigError, DriveAuthError) as exc:
        print(f"drivepipe: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except DriveError as exc:
        if exc.retryable:
            print(f"drivepipe: {exc}", file=sys.stderr)
            return EXIT_UNREACHABLE
        # Drive answered, and will answer the same again (no such folder, not shared, not a
        # folder): that is the configuration to fix, not a service to wait for.
        print(f"drivepipe: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (RetryableError, StorageError) as exc:
        print(f"drivepipe: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except DrivepipeError as exc:
        print(f"drivepipe: {exc}", file=sys.stderr)
        return EXIT_FAILED_INPUTS


if __name__ == "__main__":
    sys.exit(main())
