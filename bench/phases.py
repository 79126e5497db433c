"""Per-phase wall and CPU seconds of the filter_derive scenario, for each contender.

    python -m bench.phases [--mb 200] [--seed 7]

Companion to ``bench.transform``: same input, same steps, but each contender (in its own
subprocess) reports import / read / filter / derive / write separately, so that one can see
where the time goes and how much of it is parallel (CPU seconds > wall seconds) on this
machine. CPU seconds are user + system time of the whole process (all threads).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.transform import CONTENDERS, DERIVE_EXPR, FILTER_EXPR, generate_csv

PHASES = ("import", "read", "filter", "derive", "write")


class Clock:
    """Wall and CPU seconds since the previous ``mark``."""

    def __init__(self) -> None:
        self.phases: dict[str, tuple[float, float]] = {}
        self._wall, self._cpu = time.perf_counter(), self._cpu_now()

    @staticmethod
    def _cpu_now() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    def mark(self, phase: str) -> None:
        wall, cpu = time.perf_counter(), self._cpu_now()
        self.phases[phase] = (wall - self._wall, cpu - self._cpu)
        self._wall, self._cpu = wall, cpu


def ours(source: Path, dest: Path, mark: Callable[[str], None]) -> None:
    from shared.transform.readers import read_table
    from shared.transform.steps.runner import apply_steps
    from shared.transform.steps.specs import validate_steps
    from shared.transform.writers import write_table

    steps = validate_steps(
        [
            {"op": "filter", "expr": FILTER_EXPR},
            {"op": "derive", "column": "revenue", "expr": DERIVE_EXPR},
        ]
    )
    mark("import")
    [table] = read_table(source, "csv")
    mark("read")
    frame, _ = apply_steps(table.frame, steps[:1])
    mark("filter")
    frame, _ = apply_steps(frame, steps[1:])
    mark("derive")
    with dest.open("wb") as sink:
        write_table(frame, "parquet", sink)
    mark("write")


def pyarrow_reference(source: Path, dest: Path, mark: Callable[[str], None]) -> None:
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    mark("import")
    table = pacsv.read_csv(source, parse_options=pacsv.ParseOptions(newlines_in_values=True))
    mark("read")
    mask = pc.and_(pc.greater_equal(table["units"], 5), pc.not_equal(table["region"], "APAC"))
    table = table.filter(mask)
    mark("filter")
    table = table.append_column("revenue", pc.multiply(table["units"], table["unit_price"]))
    mark("derive")
    pq.write_table(table, dest, compression="zstd")
    mark("write")


def plain_pandas(source: Path, dest: Path, mark: Callable[[str], None]) -> None:
    import pandas as pd

    mark("import")
    frame = pd.read_csv(source)
    mark("read")
    frame = frame.query(FILTER_EXPR)
    mark("filter")
    frame = frame.assign(revenue=frame.eval(DERIVE_EXPR))
    mark("derive")
    frame.to_parquet(dest)
    mark("write")


RUNNERS = {"ours": ours, "pyarrow": pyarrow_reference, "pandas": plain_pandas}


def run_child(contender: str, source: Path) -> dict[str, tuple[float, float]]:
    dest = source.with_name(f"phases-{contender}.parquet")
    command = [sys.executable, "-m", "bench.phases", "--child", contender, "--input", str(source)]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    dest.unlink(missing_ok=True)
    if completed.returncode != 0:
        raise SystemExit(f"{contender} failed:\n{completed.stderr}")
    return {k: tuple(v) for k, v in json.loads(completed.stdout.splitlines()[-1]).items()}  # type: ignore[misc]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--child", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        clock = Clock()
        RUNNERS[args.child](
            args.input, args.input.with_name(f"phases-{args.child}.parquet"), clock.mark
        )
        print(json.dumps(clock.phases))
        return
    source = generate_csv(args.mb, None, args.seed)
    results: dict[str, Any] = {name: run_child(name, source) for name in CONTENDERS}
    print(f"input {source.stat().st_size / 1e6:.0f} MB; wall s / CPU s per phase")
    print(f"{'phase':<8}" + "".join(f"{name:>18}" for name in CONTENDERS))
    for phase in (*PHASES, "total"):
        cells = []
        for name in CONTENDERS:
            phases = results[name]
            wall, cpu = (
                (sum(w for w, _ in phases.values()), sum(c for _, c in phases.values()))
                if phase == "total"
                else phases[phase]
            )
            cells.append(f"{wall:>9.2f} /{cpu:>6.2f}")
        print(f"{phase:<8}" + "".join(f"{cell:>18}" for cell in cells))
    total = {name: sum(w for w, _ in results[name].values()) for name in CONTENDERS}
    print(
        f"pandas / ours wall: {total['pandas'] / total['ours']:.2f}x; ours / pyarrow wall: "
        f"{total['ours'] / total['pyarrow']:.2f}x; load average {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} CPUs"
    )


if __name__ == "__main__":
    main()
