"""Parquet reader (pyarrow)."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from shared.errors import ReadError
from shared.transform.readers.arrow import arrow_to_pandas


def read_parquet(data: bytes, dtype_backend: str = "pyarrow") -> pd.DataFrame:
    """Read a whole Parquet file; a corrupt or non-Parquet file raises ``ReadError``."""
    if not data:
        raise ReadError("empty file")
    if not data.startswith(b"PAR1"):
        raise ReadError("not a Parquet file: missing PAR1 magic bytes")
    try:
        table = pq.read_table(pa.BufferReader(pa.py_buffer(data)))
    except (pa.ArrowException, OSError) as exc:
        raise ReadError(f"not a readable Parquet file: {exc}") from None
    return arrow_to_pandas(table, dtype_backend)
