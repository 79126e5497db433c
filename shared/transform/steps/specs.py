"""Transform step specs: pydantic models, a discriminated union on ``op``.

pandas-free so that a config can be validated without importing pandas. Everything that can be
checked before data arrives is checked here (expressions parse, cast types exist, custom paths
have the dotted form); custom functions are only imported when the step runs.
"""

from __future__ import annotations

import ast
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    field_validator,
    model_validator,
)

CAST_TYPES = ("int64", "float64", "string", "bool", "datetime", "date")
_DECIMAL_RE = re.compile(r"^decimal\((\d{1,2}),\s*(\d{1,2})\)$")
_IDENT = r"[A-Za-z_]\w*"
_DOTTED_RE = re.compile(rf"^{_IDENT}(\.{_IDENT})*(:{_IDENT}(\.{_IDENT})*)?$")

Aggregation = Literal[
    "sum", "mean", "min", "max", "count", "nunique", "first", "last", "median", "std"
]
NonEmptyNames = Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]


class _Step(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_decimal_type(name: str) -> tuple[int, int] | None:
    """``"decimal(10,2)"`` → ``(10, 2)``; None when ``name`` is not a decimal type."""
    match = _DECIMAL_RE.match(name.strip())
    return (int(match.group(1)), int(match.group(2))) if match else None


def _check_expression(expr: str) -> str:
    try:
        ast.parse(expr, mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"expression {expr!r} does not parse: {exc.msg}") from None
    return expr


class SelectStep(_Step):
    """Keep only these columns, in this order."""

    op: Literal["select"]
    columns: NonEmptyNames


class DropStep(_Step):
    """Remove these columns."""

    op: Literal["drop"]
    columns: NonEmptyNames


class RenameStep(_Step):
    """Rename columns: ``{old: new}``."""

    op: Literal["rename"]
    columns: Annotated[dict[str, Annotated[str, Field(min_length=1)]], Field(min_length=1)]


class NormalizeColumnsStep(_Step):
    """snake_case, unique (``_2``, ``_3``) and non-empty (``column_<n>``) column names."""

    op: Literal["normalize_columns"]
    strip_accents: bool = True


class CastStep(_Step):
    """Convert columns to types: int64, float64, string, bool, datetime, date, decimal(p,s)."""

    op: Literal["cast"]
    columns: Annotated[dict[str, str], Field(min_length=1)]
    errors: Literal["raise", "null"] = "raise"

    @field_validator("columns")
    @classmethod
    def _known_types(cls, value: dict[str, str]) -> dict[str, str]:
        for column, type_name in value.items():
            if type_name in CAST_TYPES:
                continue
            decimal = parse_decimal_type(type_name)
            if decimal is None:
                known = ", ".join((*CAST_TYPES, "decimal(p,s)"))
                raise ValueError(f"column {column!r}: unknown type {type_name!r} (known: {known})")
            precision, scale = decimal
            if not 1 <= precision <= 38 or scale > precision:
                raise ValueError(
                    f"column {column!r}: {type_name!r} needs 1 <= precision <= 38 and "
                    "scale <= precision"
                )
        return value


class FilterStep(_Step):
    """Keep rows where a pandas query expression is true (e.g. ``units.between(1, 5)``)."""

    op: Literal["filter"]
    expr: Annotated[str, Field(min_length=1)]

    @field_validator("expr")
    @classmethod
    def _parses(cls, value: str) -> str:
        return _check_expression(value)


class ReplaceStep(_Step):
    """Replace values: ``values`` maps old → new (keys are regexes when ``regex``), or
    ``pattern``/``replacement`` does a regex substitution inside string cells.
    ``column`` limits it to one column (default: all columns)."""

    op: Literal["replace"]
    column: str | None = None
    values: dict[str, Any] | None = None
    regex: bool = False
    pattern: str | None = None
    replacement: str = ""

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
        return value

    @model_validator(mode="after")
    def _one_mode(self) -> ReplaceStep:
        if (self.values is None) == (self.pattern is None):
            raise ValueError("give exactly one of 'values' or 'pattern'")
        if self.values is not None and self.regex:
            for key in self.values:
                try:
                    re.compile(key)
                except re.error as exc:
                    raise ValueError(f"values: invalid regular expression {key!r}: {exc}") from None
        return self


class FillnaStep(_Step):
    """Fill nulls with one value, or per column with ``{column: value}``."""

    op: Literal["fillna"]
    values: dict[str, Any] | str | int | float | bool


class DropnaStep(_Step):
    """Drop rows with nulls (in ``subset`` columns; ``how`` any/all)."""

    op: Literal["dropna"]
    subset: NonEmptyNames | None = None
    how: Literal["any", "all"] = "any"


class DedupeStep(_Step):
    """Drop duplicate rows (judged on ``subset``); keep first, last or none of each group."""

    op: Literal["dedupe"]
    subset: NonEmptyNames | None = None
    keep: Literal["first", "last", "none"] = "first"


class DeriveStep(_Step):
    """Add or overwrite ``column`` with a ``DataFrame.eval`` expression."""

    op: Literal["derive"]
    column: Annotated[str, Field(min_length=1)]
    expr: Annotated[str, Field(min_length=1)]

    @field_validator("expr")
    @classmethod
    def _parses(cls, value: str) -> str:
        return _check_expression(value)


class NamedAgg(_Step):
    """One output column of a groupby: ``agg`` applied to ``column``."""

    column: Annotated[str, Field(min_length=1)]
    agg: Aggregation


class GroupbyStep(_Step):
    """Group by ``by`` and compute named aggregations ``{out: {column, agg}}`` or
    ``{out: [column, agg]}``."""

    op: Literal["groupby"]
    by: NonEmptyNames
    aggs: Annotated[dict[str, NamedAgg], Field(min_length=1)]

    @field_validator("aggs", mode="before")
    @classmethod
    def _pairs_to_models(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        return {
            out: {"column": spec[0], "agg": spec[1]}
            if isinstance(spec, (list, tuple)) and len(spec) == 2
            else spec
            for out, spec in value.items()
        }

    @model_validator(mode="after")
    def _no_clash(self) -> GroupbyStep:
        clash = sorted(set(self.aggs) & set(self.by))
        if clash:
            raise ValueError(f"aggregation output(s) {', '.join(clash)} clash with 'by' columns")
        return self


class SortStep(_Step):
    """Stable sort by columns; ``ascending`` is one flag or one per column."""

    op: Literal["sort"]
    by: NonEmptyNames
    ascending: bool | list[bool] = True

    @model_validator(mode="after")
    def _lengths_match(self) -> SortStep:
        if isinstance(self.ascending, list) and len(self.ascending) != len(self.by):
            raise ValueError(
                f"ascending has {len(self.ascending)} flags for {len(self.by)} 'by' columns"
            )
        return self


class LimitStep(_Step):
    """Keep the first ``n`` rows."""

    op: Literal["limit"]
    n: Annotated[int, Field(ge=0)]


class CustomStep(_Step):
    """Call ``function(df, **params)``: "package.module:callable" or "package.module.callable"."""

    op: Literal["custom"]
    function: str
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("function")
    @classmethod
    def _dotted(cls, value: str) -> str:
        if not _DOTTED_RE.match(value) or ("." not in value and ":" not in value):
            raise ValueError(f"{value!r} is not a dotted path like 'package.module:function'")
        return value


Step = Annotated[
    SelectStep
    | DropStep
    | RenameStep
    | NormalizeColumnsStep
    | CastStep
    | FilterStep
    | ReplaceStep
    | FillnaStep
    | DropnaStep
    | DedupeStep
    | DeriveStep
    | GroupbyStep
    | SortStep
    | LimitStep
    | CustomStep,
    Field(discriminator="op"),
]

_STEPS_ADAPTER: TypeAdapter[list[Step]] = TypeAdapter(list[Step])


def validate_steps(raw: list[dict[str, Any]]) -> list[Step]:
    """Validate a list of step dicts; raises pydantic ``ValidationError`` naming the field."""
    return _STEPS_ADAPTER.validate_python(raw)
