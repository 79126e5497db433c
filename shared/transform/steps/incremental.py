"""Incremental groupby: aggregate a table that arrives in batches, in bounded memory.

Each batch is reduced to one partial row per group (pyarrow ``Table.group_by``); partials are
merged whenever they pile up past ``compact_rows``. Only decomposable aggregations qualify:
sum, count, min, max, first, last, and mean (carried as sum + count). Memory is bounded by
the number of distinct groups, not by the number of input rows.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from shared.errors import TransformError
from shared.transform.steps.columns import require_columns
from shared.transform.steps.fastpath import nulls_last_sort
from shared.transform.steps.rows import agg_pair

DECOMPOSABLE = ("sum", "count", "min", "max", "mean", "first", "last")
_SUM = pc.ScalarAggregateOptions(min_count=0)  # an all-null group sums to 0, as in pandas
# How partials of each kind merge: a sum of sums, a sum of counts, a min of mins, ...
_MERGE = {
    "sum": "sum",
    "count": "sum",
    "min": "min",
    "max": "max",
    "first": "first",
    "last": "last",
}


def undecomposable(aggs: dict[str, Any]) -> list[str]:
    """The aggregation names in ``aggs`` that cannot be merged across batches."""
    return sorted({agg_pair(spec)[1] for spec in aggs.values()} - set(DECOMPOSABLE))


class IncrementalGroupby:
    """Feed batches with :meth:`add`, then take the grouped frame from :meth:`result`.

    The result matches the ``groupby`` step's: keys first (sorted ascending, the null group
    last), then one column per named aggregation, Arrow-backed dtypes.
    """

    def __init__(self, by: list[str], aggs: dict[str, Any], *, compact_rows: int) -> None:
        self.by = list(by)
        self.named = {out: agg_pair(spec) for out, spec in aggs.items()}
        bad = undecomposable(aggs)
        if bad:
            raise TransformError(
                f"aggregation(s) {', '.join(bad)} cannot be computed batch by batch "
                f"(use {', '.join(DECOMPOSABLE)})"
            )
        self.compact_rows = compact_rows
        # One partial column per (column, kind); mean contributes a "sum" and a "count".
        self._partials: list[tuple[str, str]] = []
        for column, agg in self.named.values():
            for kind in ("sum", "count") if agg == "mean" else (agg,):
                if (column, kind) not in self._partials:
                    self._partials.append((column, kind))
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._merge_at = compact_rows  # grows to 2x the distinct groups: merges stay rare
        self.rows_in = 0

    @property
    def groups_held(self) -> int:
        """Partial rows held: at most max(compact_rows, 2 x distinct groups) + one batch's."""
        return self._pending_rows

    def add(self, frame: pd.DataFrame) -> None:
        """Aggregate one batch into the running partials."""
        require_columns(frame, [*self.by, *(column for column, _ in self.named.values())])
        self.rows_in += len(frame)
        columns = list(dict.fromkeys([*self.by, *(c for c, _ in self._partials)]))
        table = pa.Table.from_pandas(frame[columns], preserve_index=False)
        for column, kind in self._partials:
            value_type = table.schema.field(column).type
            if kind == "sum" and not (
                pa.types.is_integer(value_type) or pa.types.is_floating(value_type)
            ):
                raise TransformError(
                    f"column {column!r} is {value_type}, not a number; sum/mean need numbers "
                    "(add a cast step)"
                )
        aggregations = [
            (column, "sum", _SUM) if kind == "sum" else (column, kind)
            for column, kind in self._partials
        ]
        self._push(self._aggregate(table, aggregations))
        if self._pending_rows > self._merge_at:
            self._compact()
            self._merge_at = max(self.compact_rows, 2 * self._pending_rows)

    def result(self) -> pd.DataFrame:
        """The grouped frame for every row added so far."""
        self._compact()
        merged = self._pending[0] if self._pending else None
        columns: dict[str, pa.ChunkedArray | pa.Array] = {}
        for name in self.by:
            columns[name] = merged.column(name) if merged is not None else pa.array([], pa.null())
        for out, (column, agg) in self.named.items():
            if merged is None:
                columns[out] = pa.array([], pa.int64() if agg == "count" else pa.float64())
            elif agg == "mean":
                total = merged.column(self._slot(column, "sum")).cast(pa.float64())
                count = merged.column(self._slot(column, "count"))
                mean = pc.divide(total, pc.if_else(pc.equal(count, 0), None, count))
                columns[out] = mean
            else:
                columns[out] = merged.column(self._slot(column, agg))
        table = pa.table(columns)
        order = pc.sort_indices(table, **nulls_last_sort(self.by))
        return table.take(order).to_pandas(types_mapper=pd.ArrowDtype)

    def _slot(self, column: str, kind: str) -> str:
        return f"_p{self._partials.index((column, kind))}"

    def _aggregate(self, table: pa.Table, aggregations: list[tuple[Any, ...]]) -> pa.Table:
        """Group ``table`` by the keys; aggregate columns come back named ``_p<i>``."""
        # use_threads=False keeps rows in order, which first/last depend on.
        grouped = table.group_by(self.by, use_threads=False).aggregate(aggregations)
        first = len(self.by) if grouped.column_names[: len(self.by)] == self.by else 0
        columns = {name: grouped.column(name) for name in self.by}
        for offset in range(len(aggregations)):
            columns[f"_p{offset}"] = grouped.column(first + offset)
        return pa.table(columns)

    def _push(self, partial: pa.Table) -> None:
        self._pending.append(partial)
        self._pending_rows += partial.num_rows

    def _compact(self) -> None:
        if len(self._pending) <= 1:
            return
        combined = pa.concat_tables(self._pending, promote_options="permissive")
        aggregations = [
            (f"_p{i}", "sum", _SUM) if _MERGE[kind] == "sum" else (f"_p{i}", _MERGE[kind])
            for i, (_, kind) in enumerate(self._partials)
        ]
        self._pending, self._pending_rows = [], 0
        self._push(self._aggregate(combined, aggregations))
