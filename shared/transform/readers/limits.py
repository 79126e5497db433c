"""Bounded parsing: cheap checks that refuse a hostile input before a parser or a frame blows up.

- :func:`check_json_depth` counts ``[``/``{`` nesting over the raw bytes (outside strings) with
  numpy, chunk by chunk, before any JSON parser recurses into it.
- :func:`check_finite_table` / :func:`check_finite_frame` refuse ``1e999999`` (parsed as
  ``inf``) and the non-standard ``NaN``/``Infinity`` literals after parsing.
- :func:`check_columns` and :class:`RecordWidth` bound the number of columns from the header
  row (CSV) or first record (JSON), before the table is built.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shared.errors import ReadError

DEPTH_CHUNK_BYTES = 8 * 1024 * 1024
_QUOTE, _BACKSLASH = 0x22, 0x5C
# "[" 0x5B and "{" 0x7B (and "]" 0x5D, "}" 0x7D) differ only in bit 0x20.
_OPEN, _CLOSE, _CASE_BIT = 0x7B, 0x7D, 0x20


WIDTH_SCAN_CHARS = 16 * 1024 * 1024  # past the limit, count on this far for the error message


def check_columns(count: int, limit: int, what: str, *, exact: bool = True) -> None:
    """Refuse ``count`` columns over ``limit``, naming both and the setting that raises it."""
    if count > limit:
        many = f"{count:,}" if exact else f"more than {count:,}"
        raise ReadError(
            f"{what} has {many} columns, over the limit of {limit:,} "
            "(raise read.max_columns to allow more)"
        )


def check_json_depth(body: bytes | bytearray | memoryview, limit: int) -> None:
    """Refuse JSON (or JSON Lines) whose arrays/objects nest deeper than ``limit`` levels.

    Brackets inside strings do not count (a quote preceded by an odd run of backslashes is
    escaped). Linear, vectorized, and bounded in memory by ``DEPTH_CHUNK_BYTES``; invalid JSON
    is left to the parser, except that it may be reported as too deep first.
    """
    view = memoryview(body).cast("B")
    depth = 0
    in_string = False
    start = 0
    while start < len(view):
        end = min(start + DEPTH_CHUNK_BYTES, len(view))
        while end < len(view) and view[end - 1] == _BACKSLASH:
            end += 1  # never split a backslash run: its quote's escape is decided in one chunk
        chunk = np.frombuffer(view[start:end], dtype=np.uint8)
        deepest, depth, in_string = _chunk_depth(chunk, depth, in_string)
        if deepest > limit:
            raise ReadError(
                f"JSON is nested deeper than {limit} levels (raise read.json.max_depth to "
                "allow more)"
            )
        start = end


def _chunk_depth(chunk: np.ndarray, depth: int, in_string: bool) -> tuple[int, int, bool]:
    """(deepest level reached, depth at the end, inside a string at the end) for one chunk."""
    quotes = np.flatnonzero(chunk == _QUOTE)
    if quotes.size:
        quotes = quotes[~_escaped(chunk, quotes)]
    folded = chunk | _CASE_BIT
    opens = folded == _OPEN
    brackets = np.flatnonzero(opens | (folded == _CLOSE))
    if brackets.size == 0:
        return depth, depth, in_string ^ bool(quotes.size % 2)
    quotes_before = np.searchsorted(quotes, brackets)
    outside = (quotes_before + int(in_string)) % 2 == 0
    brackets = brackets[outside]
    levels = np.cumsum(opens[brackets].astype(np.int64) * 2 - 1) + depth
    deepest = int(levels.max()) if levels.size else depth
    end_depth = int(levels[-1]) if levels.size else depth
    return deepest, end_depth, in_string ^ bool(quotes.size % 2)


def _escaped(chunk: np.ndarray, quotes: np.ndarray) -> np.ndarray:
    """Which ``quotes`` are escaped: preceded by an odd-length run of backslashes."""
    escaped = np.zeros(quotes.size, dtype=bool)
    after_backslash = (quotes > 0) & (chunk[np.maximum(quotes - 1, 0)] == _BACKSLASH)
    if not after_backslash.any():
        return escaped
    backslashes = np.flatnonzero(chunk == _BACKSLASH)
    run_starts = backslashes[np.diff(backslashes, prepend=-2) != 1]
    candidates = quotes[after_backslash]
    # the run ending right before each candidate quote starts at the last run start before it
    starts = run_starts[np.searchsorted(run_starts, candidates - 1, side="right") - 1]
    escaped[after_backslash] = (candidates - starts) % 2 == 1
    return escaped


def reject_constant(name: str) -> float:
    """``json.loads(parse_constant=...)``: the non-standard ``NaN``/``Infinity`` literals."""
    raise ReadError(f"JSON holds a non-finite number ({name}); JSON has no NaN or Infinity")


def check_finite_table(table: pa.Table) -> None:
    """Refuse a parsed table holding ±inf or NaN in any float field, nested ones included."""
    for field, column in zip(table.schema, table.columns, strict=True):
        for chunk in column.chunks:
            if _has_non_finite(chunk):
                raise _non_finite(field.name)


def _has_non_finite(array: pa.Array) -> bool:
    kind = array.type
    if pa.types.is_floating(kind):
        return bool(pc.any(pc.invert(pc.is_finite(array))).as_py())
    if pa.types.is_struct(kind):
        return any(_has_non_finite(array.field(i)) for i in range(kind.num_fields))
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return _has_non_finite(array.flatten())
    return False


def check_finite_frame(frame: Any) -> None:
    """Refuse ±inf in a frame built from parsed JSON (float columns and nested object cells).

    ``NaN`` literals never get here (:func:`reject_constant`); NaN in a float column is a
    missing key.
    """
    for name in frame.columns:
        column = frame[name]
        kind = column.dtype.kind
        if kind == "f":
            if np.isinf(column.to_numpy()).any():
                raise _non_finite(name)
        elif (
            column.dtype == object
            and pd_infer(column) not in _NO_FLOATS
            and any(value_non_finite(value) for value in column)
        ):
            raise _non_finite(name)


def pd_infer(column: Any) -> str:
    """pandas' (compiled) guess of what an object column holds: "string", "mixed", ..."""
    from pandas.api.types import infer_dtype

    return str(infer_dtype(column, skipna=True))


# What an object column can hold without any float in it, nested or not.
_NO_FLOATS = frozenset({"string", "bytes", "empty", "boolean", "integer", "date", "datetime"})


def value_non_finite(value: object) -> bool:
    """Whether a parsed JSON value holds ±inf anywhere (nesting is bounded by the depth check)."""
    if isinstance(value, float):
        return math.isinf(value)
    if isinstance(value, dict):
        return any(value_non_finite(v) for v in value.values())
    if isinstance(value, list):
        return any(value_non_finite(v) for v in value)
    return False


def _non_finite(column: object) -> ReadError:
    return ReadError(
        f"column {column!s}: a non-finite number (a number too big for a float, e.g. 1e999, or "
        "NaN/Infinity); set read.json.allow_non_finite to keep them"
    )


class RecordWidth:
    """Counts the fields of one delimited record, fed as text pieces, honouring quotes.

    Skips ``skip`` non-blank records first (``skip_rows`` plus the header offset), then counts
    the next one; ``done`` turns true at its end. Counting allocates nothing per field, and
    :func:`csv_width` stops early on a record longer than ``WIDTH_SCAN_CHARS``.
    """

    def __init__(self, delimiter: str, quotechar: str, skip: int) -> None:
        self.fields = 1
        self.done = False
        self._skip = skip
        self._quote = quotechar
        self._delimiter = delimiter
        self._in_quotes = False
        self._has_content = False
        self._token = re.compile("[" + re.escape(delimiter + quotechar) + "\r\n]")

    def feed(self, text: str) -> None:
        """Scan the next piece of the text (pieces may split a record anywhere)."""
        pos = 0
        while not self.done and pos < len(text):
            if self._in_quotes:
                close = text.find(self._quote, pos)
                if close == -1:
                    return
                self._in_quotes, pos = False, close + 1
                continue
            match = self._token.search(text, pos)
            if match is None:
                self._has_content = self._has_content or pos < len(text)
                return
            self._has_content = self._has_content or match.start() > pos
            pos = match.end()
            char = match.group()
            if char == self._quote:
                self._in_quotes = self._has_content = True
            elif char == self._delimiter:
                self.fields += 1
                self._has_content = True
            elif self._has_content:  # a line break ends a non-blank record
                self._end_record()

    @property
    def counting(self) -> bool:
        """True once the skipped records are behind: ``fields`` is the record's."""
        return self._skip == 0

    def finish(self) -> None:
        """The text ended: a last record without a line break counts as ended."""
        if not self.done and self._has_content:
            self._end_record()
        self.done = True

    def _end_record(self) -> None:
        if self._skip == 0:
            self.done = True
            return
        self._skip -= 1
        self.fields = 1
        self._has_content = False


def csv_width(
    pieces: Iterable[str], delimiter: str, quotechar: str, skip: int, limit: int
) -> tuple[int, bool]:
    """(fields in the first record after ``skip`` records, whether that count is exact).

    Past ``limit`` fields and ``WIDTH_SCAN_CHARS`` of text the count stops (not exact).
    """
    width = RecordWidth(delimiter, quotechar, skip)
    scanned = 0
    for piece in pieces:
        width.feed(piece)
        scanned += len(piece)
        if width.done:
            return width.fields, True
        if width.fields > limit and width.counting and scanned > WIDTH_SCAN_CHARS:
            return width.fields, False
    width.finish()
    return width.fields, True
