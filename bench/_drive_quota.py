"""Part 2 of bench.drive_scale: syncs against the emulator's quota (``--qps``), one client at a
time and as fan-out workers sharing it. Every run's downloads are checked against the source."""

from __future__ import annotations

import argparse
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from shared.drive import DriveClient, DriveFile
from shared.drive.client import DEFAULT_CONCURRENCY
from shared.errors import DriveError
from shared.run.fetch import scratch_file
from shared.run.prefetch import Downloads


def part_two(args: argparse.Namespace, root: Path, sources: dict[str, str]) -> None:
    """The 403 share at each ``--qps-concurrency`` (adaptive limiter), then without the
    limiter at the default, then ``--qps-workers`` workers sharing the quota."""
    from bench import drive_scale as scale

    sub, chosen = scale.subset_tree(root, sources, args.qps_files)
    concurrencies = [int(c) for c in args.qps_concurrency.split(",")]
    print(
        f"\nPart 2: sync {len(chosen)} files (walk + downloads, pipelined) with the emulator's "
        f"quota at {args.qps:g} req/s (403 userRateLimitExceeded beyond it), latency "
        f"{args.latency * 1000:.0f} ms; default concurrency {DEFAULT_CONCURRENCY}"
    )
    settings = [(c, True) for c in concurrencies] + [(DEFAULT_CONCURRENCY, False)]
    for concurrency, adaptive in settings:
        for _ in range(args.qps_repeat):
            quota_run(args, sub, chosen, concurrency, adaptive)
    for setting in (w for w in args.qps_workers.split(",") if w and w != "0"):
        workers, _, each = setting.partition("x")
        for _ in range(args.qps_repeat):
            workers_run(args, sub, chosen, int(workers), int(each or DEFAULT_CONCURRENCY))


def _line(name: str, seconds: float, requests: int, limited: int, qps: float, extra: str) -> str:
    # The emulator's bucket holds one second of requests when the run starts.
    ideal = max(0.0, requests - limited - qps) / qps
    ratio = f"{seconds / ideal:.2f}" if ideal else "n/a"
    return (
        f"  {name:<34} {seconds:6.2f} s  {requests} requests, {limited} answered 403 "
        f"({100 * limited / requests:.1f}%), quota bound {ideal:.2f} s, ratio {ratio}{extra}"
    )


def quota_run(
    args: argparse.Namespace, sub: Path, chosen: dict[str, str], concurrency: int, adaptive: bool
) -> None:
    """One sync against the emulator's quota; prints the share of requests answered 403."""
    from bench import drive_scale as scale

    with scale.emulator(sub, args.latency, args.qps) as (url, root_id):
        name = f"c={concurrency} " + ("adaptive limiter" if adaptive else "per-request only")
        out = scale.CACHE / "drive-scale-out"
        phase, c, _ = scale.sync(
            url, root_id, concurrency, out, chosen, name, adaptive_backoff=adaptive
        )
    limited = phase.retries.get("rate_limit_403", 0)
    extra = ""
    if c.limiter is not None:
        s = c.limiter.stats
        extra = f", {s.decreases} rate cuts, lowest cap {s.lowest_rate or 0:.0f}/s"
    print(_line(name, phase.seconds, phase.requests, limited, args.qps, extra), flush=True)


def workers_run(
    args: argparse.Namespace, sub: Path, chosen: dict[str, str], workers: int, concurrency: int
) -> None:
    """A fanned-out sync: one listing, then ``workers`` workers (each its own client and
    limiter, as Lambda or Cloud Functions instances are) download their share at once."""
    from bench import drive_scale as scale

    out = scale.CACHE / "drive-scale-out"
    shutil.rmtree(out, ignore_errors=True)
    with scale.emulator(sub, args.latency, args.qps) as (url, root_id):
        with scale.client(url, concurrency) as planner:
            files = list(planner.walk(root_id))
            listing = planner.stats.snapshot()
        shares = [files[n::workers] for n in range(workers)]
        clients = [scale.client(url, concurrency) for _ in range(workers)]
        start = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(_work, clients, shares, [out] * workers, [concurrency] * workers))
        seconds = time.perf_counter() - start
    stats = [listing] + [c.stats.snapshot() for c in clients]
    requests = sum(s["requests"] for s in stats)
    limited = sum(s["retries"].get("rate_limit_403", 0) for s in stats)
    for c in clients:
        c.close()
    scale.verify(out, chosen)
    name = f"{workers} workers x c={concurrency} adaptive"
    extra = f"; the listing ({listing['requests']} requests) before, not timed"
    print(_line(name, seconds, requests, limited, args.qps, extra), flush=True)


def _work(client: DriveClient, files: list[DriveFile], out: Path, concurrency: int) -> Any:
    """One worker's item, fetched as the engine's worker fetches it."""
    with Downloads(client, concurrency=concurrency) as downloads:
        for file, result in downloads.fetch_many(files, downloads.open_scratch):
            if isinstance(result, DriveError):
                raise SystemExit(f"{file.path}: {result}")
            target = out / file.path
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(scratch_file(downloads.scratch, file), target)
