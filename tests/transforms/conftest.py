"""Fixtures for reader, transform and format tests (all in-process, small data)."""

from __future__ import annotations

import pandas as pd
import pytest


@pytest.fixture
def sales() -> pd.DataFrame:
    """A small Arrow-backed sales table like the reader produces."""
    frame = pd.DataFrame(
        {
            "id": [1, 2, 3, 4, 5, 6],
            "region": ["EU", "US", "EU", "APAC", None, "US"],
            "product": ["apple", "pear", "apple pie", "kiwi", "pear", "grape"],
            "units": [3, 10, 0, 7, 5, None],
            "unit_price": [1.5, 2.0, 4.25, 0.5, 2.0, 3.0],
            "comment": ["ok", "=cmd()", "", None, "x", "fine"],
        }
    )
    return frame.convert_dtypes(dtype_backend="pyarrow")
