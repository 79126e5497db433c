"""Arrow table → pandas conversion shared by the readers."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa


def arrow_to_pandas(
    table: pa.Table, dtype_backend: str = "pyarrow", *, owned: bool = True
) -> pd.DataFrame:
    """Convert without copying where possible.

    "pyarrow": every column becomes a zero-copy ``ArrowDtype`` column (nullable ints, dates).
    "numpy": classic numpy dtypes (dates become datetime64, strings pandas' ``str``).
    All-null columns (e.g. a header-only file) are typed as strings. ``owned=False`` says
    ``table`` shares buffers with data still in use (a slice), so they must not be freed
    while converting ("numpy" otherwise releases each column as soon as it is converted).
    """
    null_columns = [i for i, field in enumerate(table.schema) if pa.types.is_null(field.type)]
    for index in null_columns:
        table = table.set_column(
            index, table.field(index).name, table.column(index).cast(pa.string())
        )
    if dtype_backend == "pyarrow":
        return table.to_pandas(types_mapper=pd.ArrowDtype)
    return table.to_pandas(date_as_object=False, split_blocks=True, self_destruct=owned)
