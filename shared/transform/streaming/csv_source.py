"""CSV/TSV batch source: pyarrow's streaming reader, widened on drift (see ``batches``).

Widening follows the whole-file reader: null → int64 → float64 → string (and date →
timestamp → string) for values, invalid UTF-8 → cp1252 → latin-1 for the encoding. A row
longer than the block ("straddles two block boundaries") restarts with blocks twice as big.
"""

from __future__ import annotations

import codecs
import io
import re
from collections.abc import Generator, Iterator
from dataclasses import dataclass, replace
from typing import BinaryIO

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from shared.errors import ReadError
from shared.transform.readers.csv import arrow_csv_options, check_width
from shared.transform.readers.options import DEFAULT_MAX_COLUMNS, CsvOptions
from shared.transform.readers.sniff import (
    SAMPLE_BYTES,
    check_column_names,
    decode_sample,
    sniff_delimiter,
    sniff_encoding,
)
from shared.transform.streaming.batches import (
    SchemaDrift,
    StreamHints,
    arrow_input,
    bigger_blocks,
    frame_at,
)

_WIDE_ENCODINGS = ("utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be")
_CONVERSION_RE = re.compile(
    r"In CSV column #(\d+): (?:Row #\d+: )?CSV conversion error to ([^:]+): invalid value '(.*)'$",
    re.DOTALL,
)
# Wider types tried, in order, when a value does not fit a column's current type.
_WIDER: dict[str, tuple[pa.DataType, ...]] = {
    "null": (pa.int64(), pa.bool_(), pa.date32(), pa.timestamp("s"), pa.float64(), pa.string()),
    "int64": (pa.float64(), pa.string()),
    "date32[day]": (pa.timestamp("s"), pa.string()),
}
SCAN_BYTES = 8 * 1024 * 1024
_STRADDLE = "straddl"  # pyarrow: "straddling object straddles two block boundaries"


@dataclass(frozen=True)
class CsvLayout:
    """Encoding, delimiter and quoting of a CSV, sniffed once from its head."""

    encoding: str  # a Python codec name; "utf8" means pyarrow reads the bytes as they are
    sniffed_encoding: bool
    delimiter: str
    quoted: bool


@dataclass(frozen=True)
class _Attempt:
    """What one read of the input goes by: the hints so far, layout, encoding, block sizes."""

    hints: StreamHints
    layout: CsvLayout
    encoding: str
    block_bytes: int
    max_row_bytes: int


def sniff_layout(
    data: BinaryIO,
    options: CsvOptions,
    default_delimiter: str | None,
    max_columns: int = DEFAULT_MAX_COLUMNS,
) -> CsvLayout:
    """Sniff a CSV's layout from its first 64 KiB (and scan for quote characters).

    A header row wider than ``max_columns`` is refused here, before any block is parsed.
    """
    data.seek(0)
    sample = data.read(SAMPLE_BYTES)
    complete = len(data.read(1)) == 0
    if not sample.strip():
        raise ReadError("empty file")
    encoding = options.encoding or sniff_encoding(sample)
    if options.encoding and encoding not in _WIDE_ENCODINGS and b"\x00" in sample:
        raise ReadError("not a CSV: binary content (NUL bytes in the text)")
    delimiter = options.delimiter or default_delimiter
    if delimiter is None:
        head = decode_sample(sample, encoding)
        delimiter = sniff_delimiter(head, options.quotechar, complete=complete)
    check_width(_decoded_pieces(data, encoding), delimiter, options, max_columns)
    wide = encoding in _WIDE_ENCODINGS
    arrow_encoding = "utf8" if encoding in ("utf-8", "utf8", "utf-8-sig", "utf_8_sig") else encoding
    return CsvLayout(
        encoding=arrow_encoding,
        sniffed_encoding=options.encoding is None,
        delimiter=delimiter,
        quoted=wide or _contains(data, options.quotechar.encode()),
    )


def _decoded_pieces(data: BinaryIO, encoding: str) -> Iterator[str]:
    """The file from its start, decoded piece by piece (only as far as the caller reads)."""
    data.seek(0)
    decoder = codecs.getincrementaldecoder(encoding)("replace")
    while block := data.read(SAMPLE_BYTES):
        yield decoder.decode(block, final=False)
    yield decoder.decode(b"", final=True)


def _contains(data: BinaryIO, needle: bytes) -> bool:
    """Whether ``needle`` occurs in the file (stops at the first hit; the file stays put)."""
    data.seek(0)
    tail = b""
    while block := data.read(SCAN_BYTES):
        if needle in tail + block[: len(needle)] or needle in block:
            return True
        tail = block[-len(needle) :]
    return False


def head_types(
    data: BinaryIO, options: CsvOptions, layout: CsvLayout, head_bytes: int
) -> dict[str, pa.DataType]:
    """Column types pyarrow infers from the first ``head_bytes`` of the file.

    Parsed as one block without read-ahead, so it costs ~3x ``head_bytes`` of memory once.
    Starting the stream with these types means a column must look different after the
    first ``infer_mb`` (not merely after the first small block) to cost a re-read. Columns
    still empty in the head are left to the stream.
    """
    if head_bytes <= 0:
        return {}
    read_options, parse_options, convert_options = arrow_csv_options(
        layout.delimiter, options, layout.quoted, encoding=layout.encoding, block_size=head_bytes
    )
    read_options.use_threads = False
    source = arrow_input(data)
    try:
        reader = pacsv.open_csv(
            source,
            read_options=read_options,
            parse_options=parse_options,
            convert_options=convert_options,
        )
        schema = reader.schema
        reader.close()
    except (pa.ArrowInvalid, UnicodeDecodeError):
        return {}  # the stream itself reports (or recovers from) the problem
    finally:
        source.close()
    return {
        field.name: field.type
        for field in schema
        if not (pa.types.is_null(field.type) or pa.types.is_binary(field.type))
    }


def csv_frames(
    data: BinaryIO,
    options: CsvOptions,
    layout: CsvLayout,
    hints: StreamHints,
    *,
    block_bytes: int,
    max_row_bytes: int,
    batch_rows: int,
) -> Generator[pd.DataFrame, None, None]:
    """Parse ``data`` block by block; yields frames (at least one, maybe empty).

    Blocks are ``hints.block_bytes`` (a restart for a long row) or else ``block_bytes``.
    """
    attempt = _Attempt(
        hints=hints,
        layout=layout,
        encoding=hints.encoding or layout.encoding,
        block_bytes=hints.block_bytes or block_bytes,
        max_row_bytes=max_row_bytes,
    )
    read_options, parse_options, convert_options = arrow_csv_options(
        layout.delimiter,
        options,
        layout.quoted,
        encoding=attempt.encoding,
        block_size=attempt.block_bytes,
    )
    convert_options.column_types = hints.column_types
    source = arrow_input(data)
    try:
        reader = pacsv.open_csv(
            source,
            read_options=read_options,
            parse_options=parse_options,
            convert_options=convert_options,
        )
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        source.close()
        raise _csv_problem(exc, None, attempt, 0) from None
    try:
        yield from _batches(reader, options, attempt, batch_rows)
    finally:
        reader.close()
        source.close()


def _batches(
    reader: pacsv.CSVStreamingReader,
    options: CsvOptions,
    attempt: _Attempt,
    batch_rows: int,
) -> Iterator[pd.DataFrame]:
    raw_names = reader.schema.names
    if options.header is not None:
        names = check_column_names(raw_names, options.duplicate_columns)
    else:
        names = [f"column_{i}" for i in range(1, len(raw_names) + 1)]
    binary = [f.name for f in reader.schema if pa.types.is_binary(f.type)]
    if binary:
        raise _not_text(binary, attempt)
    offset = 0
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            break
        except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
            raise _csv_problem(exc, reader.schema, attempt, offset) from None
        # Small blocks keep the reader's read-ahead small; gather them into full batches.
        pending.append(batch)
        pending_rows += batch.num_rows
        if pending_rows < batch_rows:
            continue
        table = pa.Table.from_batches(pending).rename_columns(names)
        full = pending_rows - pending_rows % batch_rows
        for start in range(0, full, batch_rows):
            yield frame_at(table.slice(start, batch_rows), offset, options.dtype_backend)
            offset += batch_rows
        rest = table.slice(full)
        pending, pending_rows = rest.to_batches(), rest.num_rows
    if pending_rows or offset == 0:
        table = pa.Table.from_batches(pending, schema=reader.schema).rename_columns(names)
        yield frame_at(table, offset, options.dtype_backend)


def _not_text(columns: list[str], attempt: _Attempt) -> Exception:
    """Invalid UTF-8: the file is really single-byte text, as the whole-file reader assumes."""
    encoding = attempt.encoding
    if attempt.layout.sniffed_encoding and encoding in ("utf8", "cp1252"):
        fallback = "cp1252" if encoding == "utf8" else "latin-1"
        return SchemaDrift(replace(attempt.hints, encoding=fallback), f"re-reading as {fallback}")
    return ReadError(
        f"column(s) {', '.join(columns)} hold bytes that are not valid {encoding} text"
    )


def _csv_problem(
    exc: Exception, schema: pa.Schema | None, attempt: _Attempt, offset: int
) -> Exception:
    """What a parse error means: a restart (wider type, encoding, bigger blocks) or a ReadError."""
    message = str(exc)
    hints = attempt.hints
    where = f" (in the block after data row {offset})" if offset else ""
    if isinstance(exc, UnicodeDecodeError) or "invalid UTF8" in message:
        return _not_text(["(some)"], attempt)
    if _STRADDLE in message:
        row = f"a CSV row{where}"
        return bigger_blocks(hints, attempt.block_bytes, attempt.max_row_bytes, row)
    if "Empty CSV file" in message:
        return ReadError("empty file (no header row after skipping rows)")
    match = _CONVERSION_RE.search(message)
    if match and schema is not None:
        index, value = int(match.group(1)), match.group(3)
        name = schema.names[index]
        wider = _widen(schema.field(index).type, value)
        if wider is not None:
            types = {**hints.column_types, name: wider}
            return SchemaDrift(replace(hints, column_types=types), f"column {name!r} → {wider}")
    return ReadError(f"not a valid CSV{where}: {message}")


def _widen(current: pa.DataType, value: str) -> pa.DataType | None:
    """The first type wider than ``current`` that reads ``value`` (None: nothing fits)."""
    for candidate in _WIDER.get(str(current), (pa.string(),)):
        if candidate == current:
            continue
        if candidate == pa.string() or _parses(value, candidate):
            return candidate
    return None


def _parses(value: str, kind: pa.DataType) -> bool:
    text = '"' + value.replace('"', '""') + '"\n'
    try:
        pacsv.read_csv(
            io.BytesIO(text.encode()),
            read_options=pacsv.ReadOptions(column_names=["v"]),
            convert_options=pacsv.ConvertOptions(column_types={"v": kind}),
        )
    except pa.ArrowInvalid:
        return False
    return True
