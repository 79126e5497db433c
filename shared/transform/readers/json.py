"""JSON reader: a records array, an object wrapping one records array, or JSON Lines.

Bounded (see :mod:`.limits`): nesting deeper than ``max_depth`` is refused before any parser
recurses, non-finite numbers fail the input unless allowed, and a table wider than
``read.max_columns`` is refused from its first record, before the frame is built.
"""

from __future__ import annotations

import json as stdlib_json
from collections.abc import Callable
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.json as pajson

from shared.errors import ReadError
from shared.transform.readers.arrow import arrow_to_pandas
from shared.transform.readers.limits import (
    check_columns,
    check_finite_frame,
    check_finite_table,
    check_json_depth,
    reject_constant,
    value_non_finite,
)
from shared.transform.readers.options import DEFAULT_MAX_COLUMNS, JsonOptions

_PREFERRED_KEYS = ("data", "records", "rows", "items", "results")


def read_json(
    data: bytes, options: JsonOptions, max_columns: int = DEFAULT_MAX_COLUMNS
) -> pd.DataFrame:
    """Parse JSON records into a DataFrame; bad input raises ``ReadError``."""
    body = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
    if not body.strip():
        raise ReadError("empty file")
    check_json_depth(body, options.max_depth)
    loads = json_loads(options)
    lines = options.lines
    document: Any = None
    if lines is None:
        try:
            document = loads(body)
            lines = False
        except stdlib_json.JSONDecodeError as exc:
            if exc.msg != "Extra data":
                raise ReadError(f"not valid JSON: {exc}") from None
            lines = True
        except UnicodeDecodeError as exc:
            raise ReadError(f"not valid JSON: not UTF-8 text ({exc.reason})") from None
    if lines:
        return _read_lines(body, options, max_columns)
    if document is None:
        try:
            document = loads(body)
        except (stdlib_json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ReadError(f"not valid JSON: {exc}") from None
    return _records_frame(_find_records(document), options, max_columns)


def json_loads(options: JsonOptions) -> Callable[[bytes], Any]:
    """The stdlib parser, refusing ``NaN``/``Infinity`` literals unless non-finite is allowed."""
    if options.allow_non_finite:
        return stdlib_json.loads
    return lambda text: stdlib_json.loads(text, parse_constant=reject_constant)


def check_first_line_width(body: bytes, options: JsonOptions, max_columns: int) -> None:
    """Refuse JSON Lines whose first record has more than ``max_columns`` fields.

    Parses that one line with the stdlib (its depth is already checked); a bad line is left
    to the real parse, which names it.
    """
    for line in body.split(b"\n", 64):
        if not line.strip():
            continue
        try:
            record = json_loads(options)(line)
        except (stdlib_json.JSONDecodeError, UnicodeDecodeError):
            return
        if isinstance(record, dict):
            check_columns(len(record), max_columns, "JSON Lines line 1")
        return


def arrow_lines_table(table: pa.Table, options: JsonOptions, max_columns: int) -> pa.Table:
    """The checks on a JSON Lines block parsed by pyarrow: its width, then finite numbers."""
    check_columns(table.num_columns, max_columns, "JSON Lines input")
    if not options.allow_non_finite:
        check_finite_table(table)
    return table


def _read_lines(body: bytes, options: JsonOptions, max_columns: int) -> pd.DataFrame:
    check_first_line_width(body, options, max_columns)
    try:
        table = pajson.read_json(pa.BufferReader(pa.py_buffer(body)))
    except pa.ArrowInvalid:
        return _records_frame(_parse_lines_slowly(body, options), options, max_columns)
    table = arrow_lines_table(table, options, max_columns)
    return arrow_to_pandas(table, options.dtype_backend)


def _parse_lines_slowly(body: bytes, options: JsonOptions | None = None) -> list[dict[str, Any]]:
    """Parse JSON Lines one line at a time to name the bad line (pyarrow only says "invalid")."""
    records: list[dict[str, Any]] = []
    options = options or JsonOptions()
    loads, allow_non_finite = json_loads(options), options.allow_non_finite
    for number, line in enumerate(body.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = loads(line)
        except (stdlib_json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ReadError(f"JSON Lines: line {number} is not valid JSON: {exc}") from None
        if not isinstance(record, dict):
            raise ReadError(
                f"JSON Lines: line {number} is a {type(record).__name__}, not an object"
            )
        if not allow_non_finite and value_non_finite(record):
            raise ReadError(
                f"JSON Lines: line {number} holds a non-finite number (too big for a float, "
                "e.g. 1e999); set read.json.allow_non_finite to keep it"
            )
        records.append(record)
    return records


def _find_records(document: Any) -> list[Any]:
    if isinstance(document, list):
        return document
    if not isinstance(document, dict):
        raise ReadError(f"JSON document is a {type(document).__name__}, expected records")
    list_keys = [key for key, value in document.items() if isinstance(value, list)]
    if not list_keys:
        return [document]  # a single record (or a one-line JSON Lines file)
    if len(list_keys) == 1:
        return document[list_keys[0]]
    for key in _PREFERRED_KEYS:
        if key in list_keys:
            return document[key]
    raise ReadError(
        f"JSON object has several arrays ({', '.join(list_keys)}); cannot tell which holds "
        "the records"
    )


def _records_frame(records: list[Any], options: JsonOptions, max_columns: int) -> pd.DataFrame:
    names: set[str] = set()
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise ReadError(f"JSON record {index} is a {type(record).__name__}, not an object")
        if len(names) < len(record) or not names.issuperset(record):
            names.update(record)  # the frame's columns are every key of every record
            if len(names) > max_columns:
                check_columns(len(names), max_columns, f"JSON (up to record {index})")
    frame = pd.DataFrame.from_records(records) if records else pd.DataFrame()
    if not options.allow_non_finite:
        check_finite_frame(frame)
    if options.dtype_backend == "pyarrow":
        try:
            return frame.convert_dtypes(dtype_backend="pyarrow")
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
            return frame  # mixed-type columns stay object
    return frame
