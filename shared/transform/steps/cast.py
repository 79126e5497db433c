"""The ``cast`` step: typed conversion that names the first value it cannot convert."""

from __future__ import annotations

import decimal
from collections.abc import Callable

import pandas as pd
import pyarrow as pa

from shared.errors import TransformError
from shared.transform.steps.columns import require_columns
from shared.transform.steps.specs import parse_decimal_type

_TRUE = frozenset({"true", "t", "yes", "y", "1", "1.0"})
_FALSE = frozenset({"false", "f", "no", "n", "0", "0.0"})


def cast_columns(
    df: pd.DataFrame, *, columns: dict[str, str], errors: str = "raise"
) -> pd.DataFrame:
    """Convert each column to its type name; all results are nullable Arrow-backed dtypes
    (datetime stays pandas datetime64). With ``errors="raise"`` the first value that does
    not convert raises ``TransformError`` naming column, value and row; ``"null"`` nulls it.
    """
    require_columns(df, columns)
    converted: dict[str, pd.Series] = {}
    for name, type_name in columns.items():
        source = df[name]
        result = _converter(type_name)(source)
        bad = source.notna().to_numpy(dtype=bool) & result.isna().to_numpy(dtype=bool)
        if errors == "raise" and bad.any():
            position = int(bad.argmax())
            raise TransformError(
                f"column {name!r}: cannot convert {_plain(source.iloc[position])!r} (row "
                f"{_plain(source.index[position])!r}) to {type_name}; {int(bad.sum())} bad "
                "value(s) in all; use errors: null to turn them into nulls"
            )
        converted[name] = result
    return df.assign(**converted)


def _plain(value: object) -> object:
    """numpy scalars as Python values, so messages read ``3`` rather than ``np.int64(3)``."""
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def _converter(type_name: str) -> Callable[[pd.Series], pd.Series]:
    decimal_type = parse_decimal_type(type_name)
    if decimal_type is not None:
        return lambda series: _to_decimal(series, *decimal_type)
    return {
        "int64": _to_int,
        "float64": _to_float,
        "string": _to_string,
        "bool": _to_bool,
        "datetime": _to_datetime,
        "date": _to_date,
    }[type_name]


def _numeric(series: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(series.dtype):
        series = series.astype("float64[pyarrow]")
    elif not pd.api.types.is_numeric_dtype(series.dtype):
        series = series.astype("string[pyarrow]").str.strip()
    return pd.to_numeric(series, errors="coerce", dtype_backend="pyarrow")


def _to_float(series: pd.Series) -> pd.Series:
    return _numeric(series).astype("float64[pyarrow]")


def _to_int(series: pd.Series) -> pd.Series:
    numbers = _numeric(series).astype("float64[pyarrow]")
    whole = numbers.where(numbers.round(0) == numbers)  # 2.5 is not an int64: null → bad value
    return whole.astype("int64[pyarrow]")


def _to_string(series: pd.Series) -> pd.Series:
    return series.astype("string[pyarrow]")


def _to_bool(series: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(series.dtype):
        return series.astype("bool[pyarrow]")
    lowered = series.astype("string[pyarrow]").str.strip().str.lower()
    truth = lowered.map(lambda v: True if v in _TRUE else (False if v in _FALSE else None))
    return truth.astype("bool[pyarrow]")


def _to_datetime(series: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return series
    if isinstance(series.dtype, pd.ArrowDtype) and pa.types.is_temporal(series.dtype.pyarrow_dtype):
        return pd.to_datetime(series)
    return pd.to_datetime(series.astype("string[pyarrow]"), errors="coerce", format="ISO8601")


def _to_date(series: pd.Series) -> pd.Series:
    return _to_datetime(series).dt.date.astype(pd.ArrowDtype(pa.date32()))


def _to_decimal(series: pd.Series, precision: int, scale: int) -> pd.Series:
    quantum = decimal.Decimal(1).scaleb(-scale)
    limit = decimal.Decimal(10) ** (precision - scale)

    def convert(value: object) -> decimal.Decimal | None:
        if value is None or value is pd.NA or (isinstance(value, float) and value != value):
            return None
        try:
            number = decimal.Decimal(str(value).strip()).quantize(quantum)
        except (decimal.InvalidOperation, ValueError):
            return None
        return number if abs(number) < limit else None

    values = [convert(value) for value in series.tolist()]
    array = pa.array(values, type=pa.decimal128(precision, scale))
    return pd.Series(array, index=series.index, dtype=pd.ArrowDtype(array.type), name=series.name)
