"""JSON reader: a records array, an object wrapping one records array, or JSON Lines."""

from __future__ import annotations

import json as stdlib_json
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.json as pajson

from shared.errors import ReadError
from shared.transform.readers.arrow import arrow_to_pandas
from shared.transform.readers.options import JsonOptions

_PREFERRED_KEYS = ("data", "records", "rows", "items", "results")


def read_json(data: bytes, options: JsonOptions) -> pd.DataFrame:
    """Parse JSON records into a DataFrame; bad input raises ``ReadError``."""
    body = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
    if not body.strip():
        raise ReadError("empty file")
    lines = options.lines
    document: Any = None
    if lines is None:
        try:
            document = stdlib_json.loads(body)
            lines = False
        except stdlib_json.JSONDecodeError as exc:
            if exc.msg != "Extra data":
                raise ReadError(f"not valid JSON: {exc}") from None
            lines = True
        except UnicodeDecodeError as exc:
            raise ReadError(f"not valid JSON: not UTF-8 text ({exc.reason})") from None
    if lines:
        return _read_lines(body, options)
    if document is None:
        try:
            document = stdlib_json.loads(body)
        except (stdlib_json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ReadError(f"not valid JSON: {exc}") from None
    return _records_frame(_find_records(document), options)


def _read_lines(body: bytes, options: JsonOptions) -> pd.DataFrame:
    try:
        table = pajson.read_json(pa.BufferReader(pa.py_buffer(body)))
    except pa.ArrowInvalid:
        return _records_frame(_parse_lines_slowly(body), options)
    return arrow_to_pandas(table, options.dtype_backend)


def _parse_lines_slowly(body: bytes) -> list[dict[str, Any]]:
    """Parse JSON Lines one line at a time to name the bad line (pyarrow only says "invalid")."""
    records: list[dict[str, Any]] = []
    for number, line in enumerate(body.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = stdlib_json.loads(line)
        except (stdlib_json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ReadError(f"JSON Lines: line {number} is not valid JSON: {exc}") from None
        if not isinstance(record, dict):
            raise ReadError(
                f"JSON Lines: line {number} is a {type(record).__name__}, not an object"
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


def _records_frame(records: list[Any], options: JsonOptions) -> pd.DataFrame:
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise ReadError(f"JSON record {index} is a {type(record).__name__}, not an object")
    frame = pd.DataFrame.from_records(records) if records else pd.DataFrame()
    if options.dtype_backend == "pyarrow":
        try:
            return frame.convert_dtypes(dtype_backend="pyarrow")
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
            return frame  # mixed-type columns stay object
    return frame
