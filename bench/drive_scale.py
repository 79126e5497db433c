"""Benchmark: list and sync a 10,000-file Drive tree from the emulator, then hit its quota.

    python -m bench.drive_scale [--files 10000] [--fanout 10] [--latency 0.03]
                                [--concurrency 8,DEFAULT] [--qps 100 --qps-files 2000]
                                [--qps-concurrency 8,DEFAULT] [--qps-workers 2,4,4x4]
                                [--repeat 2] [--parts 1,1b,2]

Part 1 lists the tree (batched parent queries vs one query per folder) and downloads every
file (each checked against its md5 and against the source bytes) at each --concurrency.
Then, in --repeat interleaved rounds at each --concurrency: the walk, then fetch_many over
its list (the sync engine before #18), and both at once, as the engine now does
(shared.run.prefetch.Downloads: downloads start as the walk finds files, listing and
downloads under one in-flight bound of c). Each phase reports requests, requests per second,
retries, and its ratio to the lower bound ceil(requests / threads) x latency; a summary
compares the pipelined sync at the default concurrency (median) with walk-then-download at
the old default (8) and at the same concurrency. Part 2 serves the
first --qps-files files with the emulator's token bucket at --qps requests per second and
syncs them pipelined at each --qps-concurrency with the adaptive limiter (and at the default
without it), then as --qps-workers fan-out workers (each its own client and limiter) sharing
the quota: 403 answers and their share of requests, and time against the quota bound
(successful requests minus the bucket's initial second, over --qps). The tree (random bytes,
fanout x fanout leaf folders) is cached under /tmp/drivepipe-bench/. The emulator runs in a
subprocess.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from bench._drive_overlap import overlap
from bench._drive_quota import part_two
from bench._emulator import emulator_process
from bench._ours import Timeline, listed_then_fetched, pipelined
from shared.drive import DriveClient, DriveFile, RetryPolicy, TokenAuth
from shared.drive.client import DEFAULT_CONCURRENCY
from shared.errors import DriveError

CACHE = Path("/tmp/drivepipe-bench")
OLD_CONCURRENCY = 8  # the default before issue #18
MANIFEST = ".sources.json"  # dot-files are not served by the emulator


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=10_000, help="files in the tree")
    parser.add_argument("--fanout", type=int, default=10, help="folders per level (2 levels)")
    parser.add_argument("--min-bytes", type=int, default=512, help="smallest file")
    parser.add_argument("--max-bytes", type=int, default=4096, help="largest file")
    parser.add_argument("--latency", type=float, default=0.03, help="seconds added per request")
    both = ",".join(str(c) for c in sorted({OLD_CONCURRENCY, DEFAULT_CONCURRENCY}))
    parser.add_argument("--concurrency", default=both, help="client concurrencies to try")
    parser.add_argument("--qps", type=float, default=100.0, help="quota for part 2 (0: skip)")
    parser.add_argument("--qps-files", type=int, default=2000, help="files synced in part 2")
    parser.add_argument("--qps-concurrency", default=both, help="concurrencies for part 2")
    parser.add_argument("--qps-repeat", type=int, default=1, help="runs per part 2 setting")
    parser.add_argument(
        "--qps-workers",
        default="2,4,4x4",
        help="fan-out workers sharing the quota in part 2, N or NxCONCURRENCY (0: skip)",
    )
    parser.add_argument("--skip-unbatched", action="store_true", help="skip per-folder listing")
    parser.add_argument("--skip-downloads", action="store_true", help="list only in part 1")
    parser.add_argument("--parts", default="1,1b,2", help="parts to run (1, 1b, 2)")
    parser.add_argument("--repeat", type=int, default=2, help="rounds of part 1's comparison")
    return parser.parse_args(argv)


def make_tree(files: int, fanout: int, min_bytes: int, max_bytes: int) -> tuple[Path, dict]:
    """The cached tree and its {relative path: md5}; made with random bytes if missing."""
    root = CACHE / f"drive-scale-{files}-f{fanout}-{min_bytes}-{max_bytes}"
    manifest = root / MANIFEST
    if manifest.exists():
        return root, json.loads(manifest.read_text())
    shutil.rmtree(root, ignore_errors=True)
    rng = random.Random(7)
    sources: dict[str, str] = {}
    for i in range(files):
        leaf = i % (fanout * fanout)
        rel = f"top_{leaf // fanout:02d}/leaf_{leaf % fanout:02d}/part_{i:05d}.bin"
        data = rng.randbytes(rng.randint(min_bytes, max_bytes))
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        sources[rel] = hashlib.md5(data).hexdigest()
    manifest.write_text(json.dumps(sources))
    return root, sources


def subset_tree(root: Path, sources: dict[str, str], count: int) -> tuple[Path, dict]:
    """Hard links to the first ``count`` files of ``root`` (for the quota run)."""
    sub = root.with_name(root.name + f"-first{count}")
    chosen = dict(sorted(sources.items())[:count])
    if not (sub / MANIFEST).exists():
        shutil.rmtree(sub, ignore_errors=True)
        for rel in chosen:
            (sub / rel).parent.mkdir(parents=True, exist_ok=True)
            os.link(root / rel, sub / rel)
        (sub / MANIFEST).write_text(json.dumps(chosen))
    return sub, chosen


@contextmanager
def emulator(
    root: Path, latency: float, qps: float | None = None, incomplete: str | None = None
) -> Iterator[tuple[str, str]]:
    """Serve ``root`` from a subprocess; yields (api url, root folder id)."""
    options = ["--qps", str(qps)] if qps else []
    if incomplete:
        options += ["--incomplete-batches", incomplete]
    with emulator_process(root, latency, *options) as served:
        yield served


@dataclass
class Phase:
    """One timed phase: its wall time, requests, retries and the threads it used."""

    name: str
    seconds: float
    requests: int
    retries: dict[str, int]
    threads: int
    rounds: int = 0  # requests that must follow one another (tree depth), if more

    def line(self, latency: float) -> str:
        bound = max(self.rounds, math.ceil(self.requests / self.threads)) * latency
        ratio = f"{self.seconds / bound:5.2f}" if bound else "  n/a"
        retries = sum(self.retries.values())
        return (
            f"  {self.name:<34} {self.seconds:7.2f} s  {self.requests:6d} req  "
            f"{self.requests / self.seconds:7.1f} req/s  retries {retries:5d}  "
            f"bound {bound:6.2f} s  ratio {ratio}"
        )


def client(url: str, concurrency: int, **options: object) -> DriveClient:
    retry = RetryPolicy(max_attempts=30, base_delay=0.05, max_delay=2.0)
    return DriveClient(
        TokenAuth("bench"), base_url=url, concurrency=concurrency, retry=retry, **options
    )  # type: ignore[arg-type]


def list_tree(url: str, root_id: str, concurrency: int, batch: bool) -> tuple[Phase, list]:
    """Walk the tree once; returns the phase and the files."""
    with client(url, concurrency, batch_folders=batch) as c:
        start = time.perf_counter()
        files = list(c.walk(root_id))
        seconds = time.perf_counter() - start
        stats = c.stats.snapshot()
        name = f"list c={concurrency} ({'batched' if batch else 'per folder'})"
        # root, top and leaf folders are listed one level after another
        phase = Phase(name, seconds, stats["requests"], stats["retries"], c.walk_workers, 3)
        batches = stats["listing"].get("batched_queries", 0)
        if batch:
            phase.name += f" {batches}q"
        return phase, files


def verify(out: Path, sources: dict[str, str]) -> None:
    """Every source file must be in ``out`` with the same md5; then ``out`` is removed."""
    for rel, digest in sources.items():
        if hashlib.md5((out / rel).read_bytes()).hexdigest() != digest:
            raise SystemExit(f"downloaded bytes differ from the source: {rel}")
    shutil.rmtree(out)


def download(
    url: str, files: Callable[[DriveClient], Iterable[DriveFile]], concurrency: int, out: Path,
    sources: dict[str, str], name: str, **options: object,
) -> tuple[Phase, DriveClient]:  # fmt: skip
    """fetch_many ``files(client)`` into ``out``, then check each against the source md5."""
    shutil.rmtree(out, ignore_errors=True)

    def open_dest(file: DriveFile) -> IO[bytes]:
        path = out / file.path
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.open("w+b")

    with client(url, concurrency, **options) as c:
        start = time.perf_counter()
        for file, result in c.fetch_many(files(c), open_dest):
            if isinstance(result, DriveError):
                raise SystemExit(f"{file.path}: {result}")
        seconds = time.perf_counter() - start
        stats = c.stats.snapshot()
    verify(out, sources)
    return Phase(name, seconds, stats["requests"], stats["retries"], concurrency), c


def sync(
    url: str, root_id: str, concurrency: int, out: Path, sources: dict[str, str], name: str,
    overlap: bool = True, **options: object,
) -> tuple[Phase, DriveClient, Timeline]:  # fmt: skip
    """Walk and download together as the sync engine does (bench._ours.pipelined), or with
    ``overlap=False`` the whole walk first, then fetch_many (the engine before #18)."""
    shutil.rmtree(out, ignore_errors=True)
    scratch = out.with_name(out.name + "-scratch")
    with client(url, concurrency, **options) as c:
        start = time.perf_counter()
        if overlap:
            timeline = pipelined(c, root_id, out, concurrency, scratch)
        else:
            timeline = listed_then_fetched(c, root_id, out, concurrency)
        seconds = time.perf_counter() - start
        stats = c.stats.snapshot()
    shutil.rmtree(scratch, ignore_errors=True)
    verify(out, sources)
    phase = Phase(name, seconds, stats["requests"], stats["retries"], concurrency, 3)
    return phase, c, timeline


def part_one(args: argparse.Namespace, root: Path, sources: dict[str, str]) -> None:
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    folders = 1 + args.fanout + args.fanout**2
    print(
        f"\nPart 1: {len(sources)} files in {folders} folders, latency "
        f"{args.latency * 1000:.0f} ms/request; bound = max(ceil(requests / threads), "
        "levels) x latency; listing threads = 2 x c"
    )
    with emulator(root, 0.0) as (url, root_id):
        list_tree(url, root_id, concurrency=8, batch=True)  # warm the emulator's md5 cache
        phase, _ = list_tree(url, root_id, concurrency=8, batch=True)
        phase.name += ", 0 ms latency"
        print(phase.line(args.latency) + "   <- CPU floor (JSON both sides)", flush=True)
    seconds: dict[tuple[str, int], float] = {}
    with emulator(root, args.latency) as (url, root_id):
        list_tree(url, root_id, concurrency=8, batch=True)  # warm-up (md5 cache), not reported
        files: list[DriveFile] = []
        for concurrency in concurrencies:
            for batch in (True, False) if not args.skip_unbatched else (True,):
                phase, files = list_tree(url, root_id, concurrency, batch)
                if len(files) != len(sources):
                    raise SystemExit(f"listed {len(files)} files, expected {len(sources)}")
                print(phase.line(args.latency), flush=True)
                if batch:
                    seconds["list", concurrency] = phase.seconds
        out = CACHE / "drive-scale-out"
        for concurrency in concurrencies if not args.skip_downloads else ():
            name = f"download c={concurrency}"
            phase, _ = download(url, lambda _: files, concurrency, out, sources, name)
            print(phase.line(args.latency), flush=True)
        if not args.skip_downloads:
            overlap(args, url, root_id, sources, concurrencies)


def partial_answers(args: argparse.Namespace, root: Path, sources: dict[str, str]) -> None:
    """Listing when Drive answers every batched query for its first folder only."""
    print(
        "\nPart 1b: listing when every batched query answers for one folder only "
        "(emulator --incomplete-batches), c=8"
    )
    for mode in ("flagged", "silent"):
        with emulator(root, args.latency, incomplete=mode) as (url, root_id):
            list_tree(url, root_id, concurrency=8, batch=True)  # warm-up, not reported
            with client(url, 8) as c:
                start = time.perf_counter()
                found = sum(1 for _ in c.walk(root_id))
                seconds = time.perf_counter() - start
                stats = c.stats.snapshot()
        if found != len(sources):
            raise SystemExit(f"{mode}: listed {found} files, expected {len(sources)}")
        listing = stats["listing"]
        print(
            f"  {mode:<8} {seconds:6.2f} s  {stats['requests']} requests, all {found} files "
            f"found; batched queries {listing.get('batched_queries', 0)}, flagged "
            f"{listing.get('incomplete_batches', 0)}, folders listed again "
            f"{listing.get('relisted_folders', 0)}",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Part 1b's partial answers are expected: keep the walker's warnings out of the figures.
    logging.getLogger("shared.drive.listing").setLevel(logging.ERROR)
    start = time.perf_counter()
    root, sources = make_tree(args.files, args.fanout, args.min_bytes, args.max_bytes)
    print(f"tree ready in {time.perf_counter() - start:.1f} s: {root}")
    parts = set(args.parts.split(","))
    if "1" in parts:
        part_one(args, root, sources)
    if "1b" in parts:
        partial_answers(args, root, sources)
    if args.qps > 0 and "2" in parts:
        part_two(args, root, sources)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\ncpus {os.cpu_count()}, load average {load:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
