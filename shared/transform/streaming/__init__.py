"""Streaming: big CSV/TSV and JSON Lines inputs processed batch by batch in bounded memory.

``should_stream`` is cheap and pandas-free; ``stream_render`` (in ``engine``) does the work and
is loaded only when an input streams. See docs/performance.md for the design and figures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from shared.config import Pipeline

__all__ = ["STREAMABLE_FORMATS", "input_size", "should_stream"]

STREAMABLE_FORMATS = ("csv", "tsv", "jsonl")


def input_size(data: BinaryIO) -> int:
    """Size of a seekable input in bytes (the position is left at 0)."""
    data.seek(0, 2)
    size = data.tell()
    data.seek(0)
    return size


def should_stream(pipeline: Pipeline, data: BinaryIO, fmt: str) -> bool:
    """True when ``data`` is a CSV/TSV/JSON Lines input above ``streaming.threshold_mb``."""
    lines = fmt == "json" and pipeline.read.json.lines is True
    if fmt not in STREAMABLE_FORMATS and not lines:
        return False
    return input_size(data) > pipeline.streaming.threshold_bytes
