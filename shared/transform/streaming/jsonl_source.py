"""JSON Lines batch source: whole lines in blocks, each parsed by ``pyarrow.json``.

The first block fixes the schema; a later block that adds a field or needs a wider type
raises ``SchemaDrift`` with the unified schema (``pyarrow.unify_schemas``, permissive). A line
longer than a block is carried over until it ends (up to ``max_row_bytes``), so no restart.
"""

from __future__ import annotations

import re
from collections.abc import Generator
from dataclasses import replace
from typing import BinaryIO

import pandas as pd
import pyarrow as pa
import pyarrow.json as pajson

from shared.errors import ReadError
from shared.transform.readers.json import (
    _parse_lines_slowly,
    arrow_lines_table,
    check_first_line_width,
)
from shared.transform.readers.limits import check_json_depth
from shared.transform.readers.options import DEFAULT_MAX_COLUMNS, JsonOptions
from shared.transform.streaming.batches import SchemaDrift, StreamHints, frame_at, row_too_long

_STRADDLE = "straddl"  # pyarrow: "straddling object straddles two block boundaries"


def jsonl_frames(
    data: BinaryIO,
    options: JsonOptions,
    hints: StreamHints,
    *,
    block_bytes: int,
    max_row_bytes: int,
    batch_rows: int,
    max_columns: int = DEFAULT_MAX_COLUMNS,
) -> Generator[pd.DataFrame, None, None]:
    """Parse JSON Lines in blocks of whole lines; yields frames (at least one, maybe empty).

    The first block fixes the schema; a later block that adds a field or needs a wider type
    raises :class:`SchemaDrift` with the unified schema. A line longer than ``max_row_bytes``
    is a ``ReadError``, and so is a block nested deeper than ``options.max_depth``, wider than
    ``max_columns`` or holding a non-finite number (unless allowed).
    """
    data.seek(0)
    schema = hints.json_schema
    offset = line = 0
    unended = bytearray()  # the start of a line that no block so far has ended
    while True:
        block = data.read(block_bytes)
        cut = block.rfind(b"\n") + 1
        if block and cut == 0:
            unended += block  # amortised: a long line is copied O(1) times, not once per block
            if len(unended) > max_row_bytes:
                raise row_too_long(f"JSON Lines line {line + 1}", max_row_bytes)
            continue
        text = bytes(unended) + block[:cut] if block else bytes(unended)
        unended = bytearray(block[cut:])
        if line == 0 and text.startswith(b"\xef\xbb\xbf"):
            text = text[3:]
        if text.strip():
            if line == 0:
                check_first_line_width(text, options, max_columns)
            table = _parse_jsonl_block(text, line, options, max_columns)
            schema, table = _conform(table, schema, hints, line)
            for start in range(0, table.num_rows, batch_rows):
                piece = table.slice(start, batch_rows)
                yield frame_at(piece, offset, options.dtype_backend)
                offset += piece.num_rows
        line += text.count(b"\n")
        if not block:
            break
    if offset == 0:
        if schema is None:
            raise ReadError("empty file")
        yield frame_at(schema.empty_table(), 0, options.dtype_backend)


def _parse_jsonl_block(
    text: bytes, first_line: int, options: JsonOptions, max_columns: int
) -> pa.Table:
    check_json_depth(text, options.max_depth)  # before any parser recurses into it
    try:
        table = _read_json(text)
    except pa.ArrowInvalid as exc:
        try:
            _parse_lines_slowly(text, options)
        except ReadError as bad:
            numbered = re.sub(
                r"line (\d+)", lambda m: f"line {int(m.group(1)) + first_line}", str(bad), count=1
            )
            raise ReadError(numbered) from None
        raise ReadError(f"JSON Lines near line {first_line + 1}: {exc}") from None
    try:
        return arrow_lines_table(table, options, max_columns)
    except ReadError as bad:
        raise ReadError(f"JSON Lines near line {first_line + 1}: {bad}") from None


def _read_json(text: bytes) -> pa.Table:
    """``text`` (whole lines) parsed by pyarrow, also when a line is longer than its block."""
    try:
        return pajson.read_json(pa.BufferReader(text))
    except pa.ArrowInvalid as exc:
        if _STRADDLE not in str(exc):
            raise
    # A line longer than pyarrow's own 1 MiB block "straddles two block boundaries": parse the
    # text (already in memory, whole lines only) as one block.
    whole = pajson.ReadOptions(block_size=len(text) + 1)
    return pajson.read_json(pa.BufferReader(text), read_options=whole)


def _conform(
    table: pa.Table, schema: pa.Schema | None, hints: StreamHints, line: int
) -> tuple[pa.Schema, pa.Table]:
    if schema is None:
        return table.schema, table
    try:
        unified = pa.unify_schemas([schema, table.schema], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ReadError(
            f"JSON Lines: a field changes type after line {line} ({exc}); streaming needs one "
            "type per field"
        ) from None
    if not unified.equals(schema):
        raise SchemaDrift(replace(hints, json_schema=unified), f"JSON schema widened at {line}")
    columns = [
        table.column(f.name).cast(f.type)
        if f.name in table.column_names
        else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return schema, pa.Table.from_arrays(columns, schema=schema)
