"""CSV/TSV reader: sniffed encoding and delimiter, parsed by pyarrow's multi-threaded reader."""

from __future__ import annotations

import codecs
import csv as stdlib_csv
import io
import mmap
from collections.abc import Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from shared.errors import ReadError
from shared.transform.readers.arrow import arrow_to_pandas
from shared.transform.readers.limits import check_columns, csv_width
from shared.transform.readers.options import DEFAULT_MAX_COLUMNS, CsvOptions
from shared.transform.readers.sniff import (
    SAMPLE_BYTES,
    check_column_names,
    decode_sample,
    sniff_delimiter,
    sniff_encoding,
)

_UTF8_NAMES = ("utf-8", "utf8")
# Input bytes: a bytes object, or a read-only mmap of a local file (no 2nd copy in memory).
Bytes = bytes | mmap.mmap
_WIDE_ENCODINGS = ("utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be")
_PYARROW_NULLS = tuple(pacsv.ConvertOptions().null_values)


def read_csv(
    data: Bytes,
    options: CsvOptions,
    *,
    default_delimiter: str | None = None,
    max_columns: int = DEFAULT_MAX_COLUMNS,
) -> pd.DataFrame:
    """Parse delimited text into a DataFrame; bad input raises ``ReadError``.

    ``default_delimiter`` is used when ``options.delimiter`` is unset (e.g. "\\t" for .tsv);
    without either, the delimiter is sniffed. A header row (or first row) wider than
    ``max_columns`` is refused before pyarrow parses anything.
    """
    if len(data) == 0:
        raise ReadError("empty file")
    sample = data[:SAMPLE_BYTES]
    encoding = options.encoding
    if encoding is None:
        encoding = sniff_encoding(sample)
    elif encoding not in _WIDE_ENCODINGS and b"\x00" in sample:
        raise ReadError("not a CSV: binary content (NUL bytes in the text)")
    try:
        utf8 = _to_utf8(data, encoding)
    except ReadError:
        if options.encoding is not None or encoding != "cp1252":
            raise
        encoding = "latin-1"  # a byte cp1252 lacks, past the sniffed sample: latin-1 reads all
        utf8 = _to_utf8(data, encoding)
    if _is_blank(utf8):
        raise ReadError("empty file")
    delimiter = options.delimiter or default_delimiter
    if delimiter is None:
        head = decode_sample(utf8[:SAMPLE_BYTES], "utf-8")
        delimiter = sniff_delimiter(head, options.quotechar, complete=len(utf8) <= SAMPLE_BYTES)
    check_width(utf8_pieces(utf8), delimiter, options, max_columns)
    try:
        table = _parse(utf8, delimiter, options)
    except pa.ArrowInvalid as exc:
        raise _explain_parse_error(exc, utf8, delimiter, options) from None
    binary = [field.name for field in table.schema if pa.types.is_binary(field.type)]
    if binary:
        # pyarrow keeps invalid UTF-8 as binary columns. The sniffed sample was UTF-8 but a
        # later part is not: the file is really cp1252/latin-1, so read it again as such.
        if options.encoding is None and encoding == "utf-8":
            fallback = options.model_copy(update={"encoding": _single_byte(data)})
            return read_csv(data, fallback, default_delimiter=delimiter, max_columns=max_columns)
        raise ReadError(
            f"column(s) {', '.join(binary)} hold bytes that are not valid {encoding} text"
        )
    names = [f"column_{i}" for i in range(1, table.num_columns + 1)]
    if options.header is not None:
        names = check_column_names(table.column_names, options.duplicate_columns)
    table = table.rename_columns(names)
    return arrow_to_pandas(table, options.dtype_backend)


def check_width(
    pieces: Iterator[str], delimiter: str, options: CsvOptions, max_columns: int
) -> None:
    """Refuse a CSV whose header row (the first row read) has more than ``max_columns`` fields.

    Counts the fields of that one record, quote-aware, without building anything: a
    100,000-column header costs a scan of one line, not a 100,000-column table.
    """
    skip = options.skip_rows + (options.header or 0)
    width, exact = csv_width(pieces, delimiter, options.quotechar, skip, max_columns)
    what = "the CSV header row" if options.header is not None else "the first CSV row"
    check_columns(width, max_columns, what, exact=exact)


def utf8_pieces(utf8: Bytes, size: int = SAMPLE_BYTES) -> Iterator[str]:
    """UTF-8 bytes decoded piece by piece (only as far as the caller reads)."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    for start in range(0, len(utf8), size):
        yield decoder.decode(utf8[start : start + size], final=False)
    yield decoder.decode(b"", final=True)


def _is_blank(data: Bytes) -> bool:
    if data[:SAMPLE_BYTES].strip():
        return False
    return len(data) <= SAMPLE_BYTES or not bytes(data).strip()


def _single_byte(data: Bytes) -> str:
    try:
        str(data, "cp1252")
        return "cp1252"
    except UnicodeDecodeError:
        return "latin-1"


def _to_utf8(data: Bytes, encoding: str) -> Bytes:
    """UTF-8 text, without copying when the input already is UTF-8 (pyarrow skips a BOM)."""
    if encoding in _UTF8_NAMES or encoding in ("utf-8-sig", "utf_8_sig"):
        return data
    try:
        return str(data, encoding).encode("utf-8")
    except UnicodeDecodeError as exc:
        raise ReadError(
            f"cannot decode the file as {encoding}: byte {exc.start} is invalid ({exc.reason})"
        ) from None


def _parse(utf8: Bytes, delimiter: str, options: CsvOptions) -> pa.Table:
    # Quote-aware chunking costs ~30% of parse time; only pay it when quotes exist.
    quoted = utf8.find(options.quotechar.encode()) != -1
    read_options, parse_options, convert_options = arrow_csv_options(delimiter, options, quoted)
    try:
        return pacsv.read_csv(
            pa.BufferReader(pa.py_buffer(utf8)),
            read_options=read_options,
            parse_options=parse_options,
            convert_options=convert_options,
        )
    except pa.ArrowInvalid as exc:
        if "straddl" not in str(exc):
            raise
    # A row longer than pyarrow's block (1 MiB) "straddles two block boundaries": read the
    # file as one block instead (single-threaded, but the file is already in memory).
    read_options.block_size = len(utf8) + 1
    return pacsv.read_csv(
        pa.BufferReader(pa.py_buffer(utf8)),
        read_options=read_options,
        parse_options=parse_options,
        convert_options=convert_options,
    )


def arrow_csv_options(
    delimiter: str,
    options: CsvOptions,
    newlines_in_values: bool,
    *,
    encoding: str = "utf8",
    block_size: int | None = None,
) -> tuple[pacsv.ReadOptions, pacsv.ParseOptions, pacsv.ConvertOptions]:
    """pyarrow's CSV options for ``options``: shared by the whole-file and streaming readers."""
    read_options = pacsv.ReadOptions(
        skip_rows=options.skip_rows + (options.header or 0),
        autogenerate_column_names=options.header is None,
        use_threads=True,
        encoding=encoding,
    )
    if block_size is not None:
        read_options.block_size = block_size
    parse_options = pacsv.ParseOptions(
        delimiter=delimiter,
        quote_char=options.quotechar,
        newlines_in_values=newlines_in_values,
    )
    convert_options = pacsv.ConvertOptions(
        null_values=[*_PYARROW_NULLS, *options.na_values],
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
    )
    return read_options, parse_options, convert_options


def _explain_parse_error(
    exc: pa.ArrowInvalid, utf8: Bytes, delimiter: str, options: CsvOptions
) -> ReadError:
    message = str(exc)
    if "Expected" in message and "columns" in message:
        ragged = find_ragged_row(utf8, delimiter, options)
        if ragged:
            return ReadError(ragged)
    if "Empty CSV file" in message:
        return ReadError("empty file (no header row after skipping rows)")
    return ReadError(f"not a valid CSV: {message}")


def find_ragged_row(utf8: Bytes, delimiter: str, options: CsvOptions) -> str | None:
    """Locate the first record whose field count differs from the first record's.

    Slow (Python csv module), used only to explain a parse failure. Rows are numbered from 1
    in the file, counting the header and skipped rows.
    """
    text = io.StringIO(str(utf8, "utf-8", "replace"), newline="")
    reader = stdlib_csv.reader(text, delimiter=delimiter, quotechar=options.quotechar)
    expected: int | None = None
    row_number = 0
    first_line = 1
    try:
        for record in reader:
            start_line, first_line = first_line, reader.line_num + 1
            if not record:
                continue
            row_number += 1
            if row_number <= options.skip_rows:
                continue
            if expected is None:
                expected = len(record)
            elif len(record) != expected:
                line_note = f" (line {start_line})" if start_line != row_number else ""
                return (
                    f"row {row_number}{line_note} has {len(record)} "
                    f"field{'s' if len(record) != 1 else ''}, expected {expected}"
                )
    except stdlib_csv.Error as exc:
        return f"malformed CSV at line {reader.line_num}: {exc}"
    return None
