"""Fixtures for streaming tests: small inputs, a tiny threshold and tiny batches.

Every helper runs one input twice through ``shared.transform.render.render``: once with a threshold
above its size (the in-memory path) and once with ``threshold_mb=0`` and small blocks and
batches, so that even a few-KB file streams in many batches.
"""

from __future__ import annotations

import io
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pytest

from shared.config import Pipeline, parse_config
from shared.run.manifest import InputRecord
from shared.transform.render import render

BATCH_ROWS = 7
BLOCK_MB = 0.004  # 4 KB blocks: a 20 KB file is read in several blocks
REGIONS = ["EU", "US", None, "APAC", "LATAM"]


def make_pipeline(
    steps: list[dict[str, Any]] | None = None,
    *,
    stream: bool,
    read: dict[str, Any] | None = None,
    streaming: dict[str, Any] | None = None,
    **output: Any,
) -> Pipeline:
    """A pipeline writing to a dummy URL; ``stream`` picks the threshold."""
    options = {"threshold_mb": 0 if stream else 1000, "batch_rows": BATCH_ROWS}
    options["block_mb"] = BLOCK_MB
    options["infer_mb"] = 0  # types from the first 4 KB block: drift tests really drift
    body: dict[str, Any] = {
        "steps": steps or [],
        "output": {"url": "/unused", **output},
        "streaming": {**options, **(streaming or {})},
    }
    if read:
        body["read"] = read
    settings = {"custom_step_modules": ["tests.transforms"]}
    return parse_config({"settings": settings, "pipelines": {"p": body}}).pipelines["p"]


@dataclass
class Rendered:
    """What render produced: output bytes by key, and the record it filled."""

    outputs: dict[str, bytes]
    record: InputRecord

    def frames(self) -> dict[str, pd.DataFrame]:
        """Parquet outputs read back as Arrow-backed frames."""
        return {
            key: pd.read_parquet(io.BytesIO(body), dtype_backend="pyarrow")
            for key, body in self.outputs.items()
        }

    def frame(self) -> pd.DataFrame:
        """The single Parquet output."""
        [frame] = self.frames().values()
        return frame


def run_render(pipeline: Pipeline, data: bytes, fmt: str = "csv", path: str = "in.csv") -> Rendered:
    """Render ``data`` with ``pipeline``; returns the output bytes by key."""
    record = InputRecord(source_id="test", path=path)
    with ExitStack() as stack:
        outputs = render(pipeline, io.BytesIO(data), fmt, path, record, stack)
        return Rendered({out.key: out.body.read() for out in outputs}, record)


def both_ways(
    steps: list[dict[str, Any]], data: bytes, fmt: str = "csv", **kwargs: Any
) -> tuple[Rendered, Rendered]:
    """(streamed, in memory) renders of the same input and steps."""
    path = "in." + fmt
    streamed = run_render(make_pipeline(steps, stream=True, **kwargs), data, fmt, path)
    in_memory = run_render(make_pipeline(steps, stream=False, **kwargs), data, fmt, path)
    return streamed, in_memory


def sales_csv(rows: int = 400, *, bad_row: int | None = None) -> bytes:
    """A sales CSV with nulls, text, ints, floats and dates; ~25 bytes a row."""
    lines = ["id,Region Name,units,unit_price,day,note"]
    for i in range(rows):
        region = REGIONS[i % len(REGIONS)] or ""
        units = "" if i % 11 == 0 else str(i % 13)
        price = f"{(i * 37 % 1000) / 10:.1f}"
        units = "seven" if i == bad_row else units
        note = '"said ""hi"", twice"' if i % 17 == 0 else ("=1+1" if i % 19 == 0 else "ok")
        lines.append(f"{i},{region},{units},{price},2024-01-{i % 28 + 1:02d},{note}")
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def sales() -> bytes:
    """The default sales input (~12 KB: three 4 KB blocks, ~60 batches of 7 rows)."""
    return sales_csv()
