"""Reader options: pydantic models embedded in the pipeline config.

Kept free of pandas/pyarrow imports so that loading a config (and a cold start) stays cheap.
"""

from __future__ import annotations

import codecs
import warnings
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_MAX_XLSX_UNCOMPRESSED_BYTES = 200 * 1024 * 1024
DEFAULT_MAX_COLUMNS = 10_000
DEFAULT_MAX_XLSX_CELLS = 10_000_000
DEFAULT_MAX_JSON_DEPTH = 64
# The stdlib parser recurses once per level and Python stops near 1,000 frames.
MAX_JSON_DEPTH = 512
DELIMITER_CANDIDATES = (",", ";", "\t", "|")

DtypeBackend = Literal["pyarrow", "numpy"]
DuplicateColumns = Literal["error", "dedupe"]
ExcelEngine = Literal["auto", "calamine", "openpyxl"]


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CsvOptions(_Options):
    """How to parse CSV/TSV bytes. ``None`` means "sniff it"."""

    delimiter: str | None = Field(
        default=None, description="Field separator; None = sniff , ; tab |"
    )
    encoding: str | None = Field(
        default=None,
        description="Text encoding; None = sniff utf-8, utf-8-sig, utf-16, cp1252/latin-1",
    )
    header: int | None = Field(
        default=0, ge=0, description="Row (after skip_rows) holding the names"
    )
    quotechar: str = '"'
    skip_rows: int = Field(default=0, ge=0)
    na_values: list[str] = Field(default_factory=list, description="Extra null markers")
    dtype_backend: DtypeBackend = "pyarrow"
    duplicate_columns: DuplicateColumns = Field(
        default="error", description="'error': ReadError; 'dedupe': rename to a, a_2, a_3"
    )

    @field_validator("delimiter", "quotechar")
    @classmethod
    def _single_char(cls, value: str | None) -> str | None:
        if value is not None and len(value) != 1:
            raise ValueError(f"must be a single character, got {value!r}")
        if value in ("\n", "\r"):
            raise ValueError("must not be a line break")
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return codecs.lookup(value).name
        except LookupError:
            raise ValueError(f"unknown encoding {value!r}") from None


class ExcelOptions(_Options):
    """How to read .xlsx workbooks."""

    sheets: Literal["first", "all"] | list[str] = "first"
    header: int | None = Field(default=0, ge=0)
    dtype_backend: DtypeBackend = "pyarrow"
    duplicate_columns: DuplicateColumns = "error"
    max_uncompressed_bytes: int = Field(
        default=DEFAULT_MAX_XLSX_UNCOMPRESSED_BYTES,
        gt=0,
        description="Zip-bomb guard: refuse workbooks whose members inflate beyond this",
    )
    max_cells: int = Field(
        default=DEFAULT_MAX_XLSX_CELLS,
        gt=0,
        description="Refuse a sheet whose used range (last row x last column) is larger: both "
        "engines allocate that whole rectangle",
    )
    engine: ExcelEngine = Field(
        default="auto",
        description="'auto': calamine (python-calamine) when installed, else openpyxl",
    )

    @field_validator("sheets")
    @classmethod
    def _non_empty_list(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and not value:
            raise ValueError("list of sheet names must not be empty")
        return value


class JsonOptions(_Options):
    """How to read JSON: a records array, ``{"key": [records]}``, or JSON Lines."""

    lines: bool | None = Field(default=None, description="None = detect JSON Lines vs one document")
    dtype_backend: DtypeBackend = "pyarrow"
    max_depth: int = Field(
        default=DEFAULT_MAX_JSON_DEPTH,
        ge=1,
        le=MAX_JSON_DEPTH,
        description="Refuse documents (or lines) whose arrays/objects nest deeper than this",
    )
    allow_non_finite: bool = Field(
        default=False,
        description="Keep numbers too big for a float (1e999 -> inf) and NaN/Infinity literals; "
        "False fails the input",
    )


# The config format names the JSON section "json"; that shadows the deprecated BaseModel.json()
# method, which pydantic warns about. Instance attribute access returns the field as expected.
warnings.filterwarnings("ignore", message='Field name "json" in "ReadOptions" shadows')


class ReadOptions(_Options):
    """All reader options, one section per format."""

    csv: CsvOptions = Field(default_factory=CsvOptions)
    excel: ExcelOptions = Field(default_factory=ExcelOptions)
    json: JsonOptions = Field(default_factory=JsonOptions)  # type: ignore[assignment]
    max_columns: int = Field(
        default=DEFAULT_MAX_COLUMNS,
        ge=1,
        description="Refuse inputs wider than this, checked on the header row / first record "
        "before the table is built (CSV/TSV, JSON, JSON Lines, XLSX)",
    )
    sheets_export: Literal["csv", "xlsx"] = Field(
        default="csv", description="How native Google Sheets are exported (carried for the caller)"
    )
