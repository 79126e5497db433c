"""Part 1's comparison in bench.drive_scale: the walk, then the downloads (the sync engine's
shape before #18), against both at once (pipelined), interleaved round by round."""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict

from shared.drive.client import DEFAULT_CONCURRENCY

OLD_CONCURRENCY = 8  # the default before issue #18


def overlap(
    args: argparse.Namespace, url: str, root_id: str, sources: dict[str, str],
    concurrencies: list[int],
) -> None:  # fmt: skip
    """Walk, then downloads (the engine's shape before #18) against both at once, one after
    the other at each concurrency in every round, so both see the same machine load."""
    from bench.drive_scale import CACHE, sync

    out = CACHE / "drive-scale-out"
    times: dict[tuple[str, int], list[float]] = defaultdict(list)
    print(f"  walk then downloads, vs pipelined ({args.repeat} rounds, interleaved):")
    for _ in range(args.repeat):
        for c in concurrencies:
            phase, _, _ = sync(url, root_id, c, out, sources, f"walk, then download c={c}", False)
            print(phase.line(args.latency), flush=True)
            times["walk, then download", c].append(phase.seconds)
            phase, _, timeline = sync(url, root_id, c, out, sources, f"pipelined c={c}")
            print(phase.line(args.latency), flush=True)
            print(
                f"    first download after {timeline.first_download or 0:.2f} s, walk ended "
                f"after {timeline.walk_done or 0:.2f} s with {timeline.early} files queued for "
                f"download; most requests in flight {timeline.max_in_flight} (bound {c})",
                flush=True,
            )
            times["pipelined", c].append(phase.seconds)
    medians = {key: statistics.median(values) for key, values in times.items()}
    new = medians.get(("pipelined", DEFAULT_CONCURRENCY))
    if new is None:
        return
    print(f"  pipelined at the default c={DEFAULT_CONCURRENCY}: {new:.2f} s (median)")
    for c, what in ((OLD_CONCURRENCY, "today's default"), (DEFAULT_CONCURRENCY, "the same c")):
        before = medians.get(("walk, then download", c))
        if before:
            print(
                f"    vs walk, then download at c={c} ({what}): {before:.2f} s, "
                f"{100 * (1 - new / before):.0f}% less wall time (target >= 25% against "
                "today's)"
            )
