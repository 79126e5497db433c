"""Output formats: DataFrame → Parquet / CSV / JSON Lines bytes, and Hive-style partitioning.

Parquet uses snappy by default, as pyarrow, Spark and awswrangler do: the AWS SDK for pandas
Lambda layer builds pyarrow without zstd ("Support for codec 'zstd' not built",
aws/aws-sdk-pandas#2445), so a zstd default would fail on Lambda. zstd (~25-40% smaller files
here) stays available as ``compression = "zstd"`` where the runtime has it.
Row groups hold up to 1 Mi rows, pyarrow's own default: big enough for good compression and
few footers, small enough to bound writer memory and let readers skip groups.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Callable, Iterator
from typing import BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from shared.errors import TransformError

OUTPUT_FORMATS = ("parquet", "csv", "jsonl")
PARQUET_COMPRESSIONS = ("zstd", "snappy", "gzip", "brotli", "lz4", "none")
TEXT_COMPRESSIONS = ("gzip", "none")
DEFAULT_PARQUET_COMPRESSION = "snappy"
PARQUET_ROW_GROUP_ROWS = 1 << 20
JSONL_CHUNK_ROWS = 100_000
HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
_FORMULA_RE = r"^[=+\-@\t\r]"
# Characters Hive escapes in partition values (FileUtils.escapePathName), plus controls.
_HIVE_ESCAPE = frozenset("\"#%'*/:=?\\\x7f{[]^") | frozenset(chr(c) for c in range(1, 32))


class CountingWriter(io.RawIOBase):
    """Forwards writes to ``dest`` and counts bytes; closing it leaves ``dest`` open."""

    def __init__(self, dest: BinaryIO) -> None:
        self._dest = dest
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        written = self._dest.write(data)
        size = memoryview(data).nbytes if written is None else written
        self.count += size
        return size

    def flush(self) -> None:
        self._dest.flush()


def extension(fmt: str, compression: str | None = None) -> str:
    """File extension for an output: ".parquet", ".csv", ".csv.gz", ".jsonl", ".jsonl.gz"."""
    _check(fmt, compression)
    if fmt == "parquet":
        return ".parquet"
    return f".{fmt}.gz" if compression == "gzip" else f".{fmt}"


def write_table(
    df: pd.DataFrame,
    fmt: str,
    dest: BinaryIO,
    *,
    compression: str | None = None,
    escape_formulas: bool = True,
    conform: Callable[[pa.Table], pa.Table] | None = None,
) -> int:
    """Write ``df`` (without its index) to ``dest``; returns the number of bytes written.

    parquet: compression snappy (default), zstd, gzip, brotli, lz4 or none.
    csv: UTF-8 with a header; ``escape_formulas`` prefixes text cells starting with
    = + - @ tab CR with ``'`` (OWASP CSV injection); numeric columns are never touched.
    jsonl: one JSON object per row, ISO 8601 dates. csv and jsonl accept compression "gzip".
    ``conform`` turns the Arrow form into its table's schema first (tables layout).
    """
    _check(fmt, compression)
    if conform is not None:
        return write_arrow(
            conform(to_arrow(df)),
            fmt,
            dest,
            compression=compression,
            escape_formulas=escape_formulas,
            table_file=True,
        )
    counter = CountingWriter(dest)
    if fmt == "parquet":
        _write_parquet(to_arrow(df), counter, compression)
        return counter.count
    if compression == "gzip":
        with gzip.GzipFile(fileobj=counter, mode="wb", mtime=0, compresslevel=6) as zipped:
            _write_text(df, fmt, zipped, escape_formulas)  # type: ignore[arg-type]
    else:
        _write_text(df, fmt, counter, escape_formulas)  # type: ignore[arg-type]
    return counter.count


def write_arrow(
    table: pa.Table,
    fmt: str,
    dest: BinaryIO,
    *,
    compression: str | None = None,
    escape_formulas: bool = True,
    table_file: bool = False,
) -> int:
    """Like :func:`write_table` for an Arrow table. ``table_file``: a file of a table
    (output.layout = "table"), written without pyarrow's copy of the Arrow schema, so every
    reader, pyarrow too, types its columns from the Parquet types alone (lineage columns are
    dictionary-encoded in memory and read back as plain strings)."""
    _check(fmt, compression)
    counter = CountingWriter(dest)
    if fmt == "parquet":
        _write_parquet(table, counter, compression, store_schema=not table_file)
        return counter.count
    sink: BinaryIO = counter  # type: ignore[assignment]
    zipped = None
    if compression == "gzip":
        zipped = gzip.GzipFile(fileobj=counter, mode="wb", mtime=0, compresslevel=6)
        sink = zipped  # type: ignore[assignment]
    if fmt == "csv":
        if escape_formulas:
            table = escape_formula_cells(table)
        pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=True))
    else:
        write_jsonl(table.to_pandas(types_mapper=pd.ArrowDtype), sink)
    if zipped is not None:
        zipped.close()
    return counter.count


def _write_parquet(
    table: pa.Table, sink: CountingWriter, compression: str | None, *, store_schema: bool = True
) -> None:
    codec = compression or DEFAULT_PARQUET_COMPRESSION
    pq.write_table(
        table,
        sink,
        compression="none" if codec == "none" else codec,
        row_group_size=PARQUET_ROW_GROUP_ROWS,
        store_schema=store_schema,
    )


def to_arrow(df: pd.DataFrame) -> pa.Table:
    """DataFrame → Arrow table without the index (zero-copy for Arrow-backed columns).

    A column Arrow cannot type (e.g. ints mixed with strings) raises ``TransformError``
    naming it.
    """
    try:
        return pa.Table.from_pandas(df, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        for name in df.columns:
            try:
                pa.array(df[name], from_pandas=True)
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as inner:
                raise TransformError(
                    f"column {name!r} cannot be written: {inner}; add a cast step to give it "
                    "one type"
                ) from None
        raise TransformError(f"table cannot be converted for writing: {exc}") from None


def _check(fmt: str, compression: str | None) -> None:
    if fmt not in OUTPUT_FORMATS:
        raise ValueError(f"unknown output format {fmt!r} (known: {', '.join(OUTPUT_FORMATS)})")
    allowed = PARQUET_COMPRESSIONS if fmt == "parquet" else TEXT_COMPRESSIONS
    if compression is not None and compression not in allowed:
        raise ValueError(
            f"compression {compression!r} is not available for {fmt} (use {', '.join(allowed)})"
        )


def _write_text(df: pd.DataFrame, fmt: str, sink: BinaryIO, escape_formulas: bool) -> None:
    if fmt == "csv":
        table = to_arrow(df)
        if escape_formulas:
            table = escape_formula_cells(table)
        pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=True))
        return
    write_jsonl(df, sink)


def write_jsonl(df: pd.DataFrame, sink: BinaryIO) -> None:
    """Append ``df`` to ``sink`` as JSON Lines (UTF-8, ISO 8601 dates), in chunks."""
    for start in range(0, max(len(df), 1), JSONL_CHUNK_ROWS):
        chunk = df.iloc[start : start + JSONL_CHUNK_ROWS]
        if chunk.empty:
            break
        text = chunk.to_json(
            orient="records", lines=True, date_format="iso", date_unit="ms", force_ascii=False
        )
        sink.write(text.encode("utf-8"))
        if not text.endswith("\n"):
            sink.write(b"\n")


def escape_formula_cells(table: pa.Table) -> pa.Table:
    """Prefix ``'`` to string cells starting with = + - @ tab or CR (string columns only;
    dictionary-encoded text, such as a table's lineage columns, is decoded first)."""
    for index, field in enumerate(table.schema):
        column = table.column(index)
        if pa.types.is_dictionary(field.type) and _is_text(field.type.value_type):
            field = field.with_type(field.type.value_type)
            column = column.cast(field.type)
            table = table.set_column(index, field, column)
        if not _is_text(field.type):
            continue
        risky = pc.match_substring_regex(column, _FORMULA_RE)
        if not pc.any(risky).as_py():
            continue
        escaped = pc.if_else(
            risky,
            pc.binary_join_element_wise(
                pa.scalar("'", field.type), column, pa.scalar("", field.type)
            ),
            column,
        )
        table = table.set_column(index, field, escaped)
    return table


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def hive_escape(value: str) -> str:
    """Escape a partition value like Hive: ``"a/b"`` → ``"a%2Fb"``."""
    return "".join(f"%{ord(char):02X}" if char in _HIVE_ESCAPE else char for char in value)


def partition_value(value: object) -> str:
    """A partition value as a path-safe string; nulls → ``__HIVE_DEFAULT_PARTITION__``."""
    if value is None or value is pd.NA or value is pd.NaT:
        return HIVE_NULL
    if isinstance(value, float) and value != value:
        return HIVE_NULL
    if isinstance(value, bool | np.bool_):  # numpy's bool under pandas 2 (the Lambda layer)
        text = "true" if value else "false"
    elif isinstance(value, pd.Timestamp):
        text = value.isoformat()
    else:
        text = str(value)
    return hive_escape(text) if text else HIVE_NULL


def split_partitions(
    df: pd.DataFrame, columns: list[str]
) -> Iterator[tuple[list[tuple[str, str]], pd.DataFrame]]:
    """Split into Hive partitions: yields ``([("region", "EU"), ("year", "2024")], rows)``
    in sorted key order; the partition columns are dropped from each part."""
    missing = [name for name in columns if name not in df.columns]
    if missing:
        raise ValueError(f"unknown partition column(s): {', '.join(missing)}")
    if not columns:
        yield [], df
        return
    grouped = df.groupby(columns, dropna=False, sort=True, observed=True)
    for key, part in grouped:
        values = key if isinstance(key, tuple) else (key,)
        labels = [
            (name, partition_value(value)) for name, value in zip(columns, values, strict=True)
        ]
        yield labels, part.drop(columns=columns).reset_index(drop=True)
