"""Benchmark: sync N files from the Drive emulator three ways and compare wall times.

    python -m bench.drive_sync [--files 100] [--latency 0.1] [--min-mb 0.5 --max-mb 3]

Contenders: (1) a sequential loop of naive downloads (one requests.get per file, no session
reuse, gdown-style), (2) the same naive function on a 10-thread pool, (3) "list, then fetch":
the engine's shape before pipelining (the whole walk, then fetch_many at the old default
concurrency 8), (4) ours: the sync engine's downloads at default settings
(shared.run.prefetch.Downloads: each file downloaded as the walk finds it, listing and
downloads under one in-flight bound, every file checked against its checksum).
The naive contenders get the file list for free and verify nothing; ours pays for its own
listing (its requests are reported). Files are random bytes in ``fanout**depth`` folders
(default 10 folders of 10 files; try --depth 2 for 111 folders). Each contender runs
--repeat times; medians are reported. The emulator runs in a separate process so its
threads do not share the client's GIL (--in-process runs it in a thread instead).
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import requests

from bench._emulator import emulator_process
from bench._ours import Timeline, listed_then_fetched, pipelined
from shared.drive import ClientStats, DriveClient, DriveFile, TokenAuth
from shared.drive.client import DEFAULT_CONCURRENCY

OLD_CONCURRENCY = 8  # the default before issue #18

TOKEN = "bench-token"
MB = 1024 * 1024


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=100, help="number of files (default 100)")
    parser.add_argument("--latency", type=float, default=0.1, help="seconds added per request")
    parser.add_argument("--min-mb", type=float, default=0.5, help="smallest file, MiB")
    parser.add_argument("--max-mb", type=float, default=3.0, help="largest file, MiB")
    parser.add_argument("--depth", type=int, default=1, help="folder depth of the tree")
    parser.add_argument("--fanout", type=int, default=10, help="sub-folders per folder")
    parser.add_argument("--pool", type=int, default=10, help="threads of the naive pool")
    parser.add_argument("--in-process", action="store_true", help="emulator in a thread")
    parser.add_argument("--repeat", type=int, default=3, help="runs per contender (median)")
    parser.add_argument("--skip-sequential", action="store_true", help="skip contender 1")
    parser.add_argument(
        "--also", default="", help="more concurrencies for ours, e.g. 12,24 (extra contenders)"
    )
    return parser.parse_args(argv)


@contextmanager
def emulator(root: Path, latency: float, in_process: bool) -> Iterator[tuple[str, str]]:
    """Serve ``root`` with ``latency`` per request; yields (api url, root folder id)."""
    if in_process:
        from devstack.drive_emulator import DriveEmulator, FaultConfig

        with DriveEmulator(root, faults=FaultConfig(latency_s=latency)) as emu:
            yield emu.url, emu.root_id
        return
    with emulator_process(root, latency) as served:
        yield served


def make_files(
    root: Path, count: int, min_size: int, max_size: int, *, depth: int, fanout: int
) -> list[Path]:
    """``count`` random binary files spread over ``fanout**depth`` leaf folders (fast to make;
    the emulator's generate_tree writes realistic CSV rows but takes minutes for 175 MiB)."""
    rng = random.Random(1)
    leaves = fanout**depth
    paths = []
    for i in range(count):
        leaf = i % leaves
        parts = [f"dir_{(leaf // fanout**level) % fanout:02d}" for level in reversed(range(depth))]
        path = root.joinpath(*parts, f"part_{i:04d}.bin")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(rng.randint(min_size, max_size)))
        paths.append(path)
    return paths


def naive_download(url: str, file: DriveFile, out: Path) -> int:
    """gdown-style: a fresh connection per file, streamed to disk; returns bytes written."""
    response = requests.get(
        f"{url}/files/{file.id}",
        params={"alt": "media"},
        headers={"Authorization": f"Bearer {TOKEN}"},
        stream=True,
        timeout=60,
    )
    response.raise_for_status()
    target = out / file.path
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with target.open("wb") as fh:
        for chunk in response.iter_content(MB):
            written += fh.write(chunk)
    return written


CPU: dict[str, list[float]] = {}  # contender -> CPU seconds (user + system, all threads)


def timed(run: Callable[[], object], name: str = "") -> float:
    start, cpu = time.perf_counter(), time.process_time()
    run()
    CPU.setdefault(name, []).append(time.process_time() - cpu)
    return time.perf_counter() - start


def verify(out: Path, sources: dict[str, str]) -> None:
    """Every source file must be in ``out`` with the same md5."""
    for rel, digest in sources.items():
        data = (out / rel).read_bytes()
        if hashlib.md5(data).hexdigest() != digest:
            raise SystemExit(f"benchmark output differs from the source: {rel}")


def sequential(url: str, listed: list[DriveFile], out: Path) -> None:
    """Contender 1: one naive download after another."""
    for file in listed:
        naive_download(url, file, out)


def naive_pool(url: str, listed: list[DriveFile], out: Path, threads: int) -> None:
    """Contender 2: the naive download on a thread pool."""
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda f: naive_download(url, f, out), listed))


def ours(
    url: str, root_id: str, out: Path, stats: list[ClientStats], timelines: list[Timeline],
    concurrency: int = DEFAULT_CONCURRENCY,
) -> None:  # fmt: skip
    """Contender 4: the engine's downloads at default settings, listing included."""
    client = DriveClient(TokenAuth(TOKEN), base_url=url)
    stats.append(client.stats)
    with client:
        timeline = pipelined(client, root_id, out, concurrency, out.with_suffix(".tmp"))
    timelines.append(timeline)


def list_then_fetch(url: str, root_id: str, out: Path, timelines: list[Timeline]) -> None:
    """Contender 3: the whole walk, then fetch_many at the old default concurrency."""
    with DriveClient(TokenAuth(TOKEN), base_url=url, concurrency=OLD_CONCURRENCY) as client:
        timelines.append(listed_then_fetched(client, root_id, out, OLD_CONCURRENCY))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="drive-sync-bench-") as tmp:
        src, work = Path(tmp) / "src", Path(tmp)
        print(f"generating {args.files} files of {args.min_mb}-{args.max_mb} MiB ...", flush=True)
        paths = make_files(src, args.files, int(args.min_mb * MB), int(args.max_mb * MB),
                           depth=args.depth, fanout=args.fanout)  # fmt: skip
        sources = {
            p.relative_to(src).as_posix(): hashlib.md5(p.read_bytes()).hexdigest() for p in paths
        }
        total_mb = sum(p.stat().st_size for p in paths) / MB
        with emulator(src, args.latency, args.in_process) as (url, root_id):
            listed: list[DriveFile] = []
            with DriveClient(TokenAuth(TOKEN), base_url=url) as lister:
                # The naive contenders get this list for free; ours lists again, timed.
                listing_s = timed(lambda: listed.extend(lister.walk(root_id)))
                listing_requests = lister.stats.requests
            runs: dict[str, list[float]] = {
                "sequential": [], "pool": [], "list+fetch": [], "ours": []
            }  # fmt: skip
            ours_stats: list[ClientStats] = []
            timelines: list[Timeline] = []
            before: list[Timeline] = []
            for rep in range(args.repeat):
                print(f"run {rep + 1}/{args.repeat} ...", flush=True)
                contenders: dict[str, Callable[[Path], None]] = {
                    "sequential": lambda out: sequential(url, listed, out),
                    "pool": lambda out: naive_pool(url, listed, out, args.pool),
                    "list+fetch": lambda out: list_then_fetch(url, root_id, out, before),
                    "ours": lambda out: ours(url, root_id, out, ours_stats, timelines),
                }
                for extra in (int(c) for c in args.also.split(",") if c):
                    runs.setdefault(f"ours c={extra}", [])
                    contenders[f"ours c={extra}"] = lambda out, extra=extra: ours(
                        url, root_id, out, [], [], extra
                    )
                if args.skip_sequential:
                    del contenders["sequential"]
                for name, run in contenders.items():
                    out = work / f"{name}-{rep}"
                    runs[name].append(timed(lambda run=run, out=out: run(out), name))
                    verify(out, sources)
                    shutil.rmtree(out)
                    shutil.rmtree(out.with_suffix(".tmp"), ignore_errors=True)
        times = {name: statistics.median(values) for name, values in runs.items() if values}
        report(args, total_mb, times, ours_stats[-1], len(listed), runs["ours"], timelines)
        first = statistics.median(t.first_download or 0.0 for t in before)
        print(f"  list+fetch (c={OLD_CONCURRENCY}): first download began after {first:.2f} s")
        print(f"  listing alone (walk): {listing_s:.2f} s, {listing_requests} requests")
        print("  all runs (s): " + "; ".join(
            f"{name} " + " ".join(f"{v:.2f}" for v in values)
            for name, values in runs.items() if values
        ))  # fmt: skip
    return 0


def report(
    args: argparse.Namespace, total_mb: float, times: dict[str, float], client_stats: ClientStats,
    n_listed: int, ours_runs: list[float], timelines: list[Timeline],
) -> None:  # fmt: skip
    """Print medians, ratios, bounds and what ours spent on listing."""
    stats = client_stats.snapshot()
    c = DEFAULT_CONCURRENCY
    lower = math.ceil(args.files / c) * args.latency
    folders = sum(args.fanout**level for level in range(args.depth + 1))
    print(
        f"\n{args.files} files, {total_mb:.0f} MiB, {folders} folders (depth {args.depth}, "
        f"fanout {args.fanout}), latency {args.latency * 1000:.0f} ms/request, "
        f"emulator {'in-process' if args.in_process else 'in a subprocess'}; "
        f"ours at default concurrency {c}"
    )
    for name, seconds in times.items():
        cpu = statistics.median(CPU.get(name) or [0.0])
        print(
            f"  {name:<11} {seconds:7.2f} s  {total_mb / seconds:7.1f} MiB/s  (median; "
            f"client CPU {cpu:.2f} s)"
        )
    ours = times["ours"]
    if "sequential" in times:
        print(f"  sequential/ours = {times['sequential'] / ours:.2f}x   (target >= 6x)")
    print(
        f"  ours/pool({args.pool}) = {ours / times['pool']:.2f}   (target <= 0.9); "
        f"ours/list+fetch = {ours / times['list+fetch']:.2f}"
    )
    floor = (args.depth + 1) * args.latency  # root, then each level of folders
    if lower > 0:
        print(
            f"  lower bound ceil({args.files}/{c}) x {args.latency:g} s = "
            f"{lower:.2f} s; ours/lower bound = {ours / lower:.2f}"
        )
        print(
            f"  listing floor: no file is known before {args.depth + 1} dependent round trips "
            f"({floor:.2f} s), so ours can't beat {floor:.2f} + {lower:.2f} = "
            f"{floor + lower:.2f} s; ours/floor = {ours / (floor + lower):.2f}   (target <= 1.15)"
        )
    if timelines:
        first = statistics.median(t.first_download or 0.0 for t in timelines)
        walked = statistics.median(t.walk_done or 0.0 for t in timelines)
        downloading = statistics.median(
            t - (tl.first_download or 0.0) for t, tl in zip(ours_runs, timelines, strict=True)
        )
        early = statistics.median(t.early for t in timelines)
        in_flight = max(t.max_in_flight for t in timelines)
        print(
            f"  ours: first download began after {first:.2f} s, the walk ended after "
            f"{walked:.2f} s ({early:.0f} files queued for download before it ended); "
            f"downloads took {downloading:.2f} s = {downloading / lower:.2f}x the bound; "
            f"most requests in flight {in_flight} (bound {c})"
        )
    listing = stats["requests"] - n_listed
    print(
        f"  ours sent {stats['requests']} requests: {n_listed} downloads + {listing} listing "
        f"(files.get root + files.list pages), retries {stats['retries'] or 0}"
    )
    if "sequential" in times:
        transfer = max(0.0, times["sequential"] / args.files - args.latency)
        bound = math.ceil(args.files / c) * (args.latency + transfer)
        print(
            f"  transfer per file, sequential minus latency: {transfer * 1000:.0f} ms -> "
            f"(latency + transfer) bound {bound:.2f} s; ours/that = {ours / bound:.2f}"
        )
        # The bytes: the sequential loop moves a file in `transfer` (an over-estimate: it also
        # opens a connection per file); say every CPU moves one stream at once, after the
        # listing that no download can overlap.
        cpus = os.cpu_count() or 1
        by_bytes = floor + args.files * transfer / cpus
        print(
            f"  bytes estimate: listing {floor:.2f} s + {args.files} x {transfer * 1000:.0f} "
            f"ms / {cpus} CPUs = {by_bytes:.2f} s; ours/that = {ours / by_bytes:.2f}"
        )
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"  cpus {os.cpu_count()}, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")


if __name__ == "__main__":
    raise SystemExit(main())
