"""generate_tree: synthetic folders of valid data files with exact sizes, for scale tests."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_REGIONS = ("North", "South", "East", "West", "Central")
_PRODUCTS = ("Widget", "Gadget", "Doohickey", "Gizmo", "Sprocket", "Thingamajig")
_COLUMNS = ("order_id", "order_date", "region", "product", "units", "unit_price", "note")
MIN_FILE_SIZE = 128
_POOL = 1024  # distinct row bodies drawn per call; rows pick from them (fast for big files)
_ROW_SLACK = 24  # rows differ in length by less than this


@dataclass(frozen=True)
class _Format:
    header: str
    draw_body: Callable[[random.Random], str]  # everything but the id and the note
    line: Callable[[int, str, str], str]  # (id, body, note) -> full line


def _draw_fields(rng: random.Random) -> tuple[str, str, str, str, str]:
    return (
        f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        rng.choice(_REGIONS),
        rng.choice(_PRODUCTS),
        str(rng.randint(1, 500)),
        f"{rng.uniform(1, 200):.2f}",
    )


def _delimited(sep: str) -> _Format:
    return _Format(
        header=sep.join(_COLUMNS) + "\n",
        draw_body=lambda rng: sep.join(_draw_fields(rng)),
        line=lambda i, body, note: f"{i}{sep}{body}{sep}{note}\n",
    )


def _jsonl_body(rng: random.Random) -> str:
    date, region, product, units, price = _draw_fields(rng)
    fields = {"order_date": date, "region": region, "product": product, "units": int(units)}
    return json.dumps({**fields, "unit_price": float(price)})[1:-1]


_FORMATS: dict[str, _Format] = {
    "csv": _delimited(","),
    "tsv": _delimited("\t"),
    "jsonl": _Format(
        header="",
        draw_body=_jsonl_body,
        line=lambda i, body, note: f'{{"order_id": {i}, {body}, "note": "{note}"}}\n',
    ),
}


def generate_tree(
    root: Path,
    n_files: int,
    *,
    min_size: int = 1024,
    max_size: int = 64 * 1024,
    depth: int = 2,
    fanout: int = 10,
    seed: int = 0,
    kinds: tuple[str, ...] = ("csv",),
) -> list[Path]:
    """Write `n_files` valid data files (sizes in [min_size, max_size] bytes, exact) spread
    over `fanout**depth` nested folders under `root`; returns their paths in creation order.
    Same arguments, same bytes."""
    unknown = set(kinds) - set(_FORMATS)
    if unknown or not kinds:
        raise ValueError(f"kinds must be a non-empty subset of {sorted(_FORMATS)}, got {kinds}")
    if n_files < 0 or depth < 0 or fanout < 1:
        raise ValueError("n_files and depth must be >= 0 and fanout >= 1")
    if not MIN_FILE_SIZE <= min_size <= max_size:
        raise ValueError(f"need {MIN_FILE_SIZE} <= min_size <= max_size")
    rng = random.Random(seed)
    pools = {kind: [_FORMATS[kind].draw_body(rng) for _ in range(_POOL)] for kind in kinds}
    leaves = fanout**depth
    paths = []
    for i in range(n_files):
        leaf = i % leaves
        parts = [f"dir_{(leaf // fanout**level) % fanout:02d}" for level in reversed(range(depth))]
        kind = kinds[i % len(kinds)]
        folder = root.joinpath(*parts)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"file_{i:06d}.{kind}"
        size = rng.randint(min_size, max_size)
        path.write_bytes(_content(_FORMATS[kind], pools[kind], size, rng.randrange(_POOL)))
        paths.append(path)
    return paths


def _content(fmt: _Format, pool: list[str], size: int, start: int) -> bytes:
    """Exactly `size` bytes; the last row's note column (`okxxx...`) pads the remainder."""
    lines = [fmt.header]
    total, i, longest = len(fmt.header), 0, 0
    while True:
        body = pool[(start + i * 7919) % len(pool)]
        line = fmt.line(i, body, "ok")
        longest = max(longest, len(line))
        if total + len(line) + longest + _ROW_SLACK > size:  # keep room for the padded row
            break
        lines.append(line)
        total += len(line)
        i += 1
    room = size - total
    if room < len(line):
        raise ValueError(f"no room for a final row ({room} < {len(line)} chars)")
    lines.append(fmt.line(i, body, "ok" + "x" * (room - len(line))))
    return "".join(lines).encode()
