"""One input's outputs made to fit their tables, whatever other writers do meanwhile.

For each input, :func:`shared.run.process.process_input`:

1. renders it; each of its tables is *prepared* against the schema as last read
   (:meth:`InputTables.prepare`): the contract decides what the input does to the table, and
   the outputs are cast to the result (a refusal fails the input alone);
2. *commits* (:meth:`InputTables.commit`): when the input changes a table, the change is merged
   into the newest schema under the schema lease and every file of the table is rewritten to
   it. If the table it commits differs from the one the outputs were cast to (another writer
   changed it meanwhile), the input is rendered again;
3. writes its outputs, then *settles* (:meth:`InputTables.settle`): it reads the schema again,
   and if a table of its outputs changed since step 2 (a change that may have listed the
   table before these outputs landed), renders and writes them again.

So after the last change, every file of a table has its schema: either the changer's rewrite
found it, or its own writer saw the change after writing it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.run.tables.store import SchemaDoc, SchemaStore
from shared.storage import layout
from shared.transform.tables.conform import Lineage, Target, conformer, observe_frame
from shared.transform.tables.schema import Observed, TableSchema, reconcile
from shared.transform.tables.types import widen

if TYPE_CHECKING:
    import pandas as pd

    from shared.config import Pipeline
    from shared.run.manifest import InputRecord
    from shared.storage import Storage

RENDER_ATTEMPTS = 5  # renders of one input while other writers keep changing its tables
_STORES: OrderedDict[tuple[str, str], SchemaStore] = OrderedDict()
_STORES_LOCK = threading.Lock()
_STORES_KEPT = 32


def store_for(pipeline: Pipeline, dest: Storage) -> SchemaStore:
    """The schema store of ``pipeline`` in ``dest``, one per process (warm runs reuse its
    cached document, which every input checks again after writing)."""
    key = (dest.base_url, pipeline.name)
    with _STORES_LOCK:
        store = _STORES.get(key)
        if store is None or store.dest is not dest:
            store = SchemaStore(
                dest,
                pipeline.name,
                fmt=pipeline.output.format,
                compression=output_compression(pipeline.output.compression),
            )
            _STORES[key] = store
            while len(_STORES) > _STORES_KEPT:
                _STORES.popitem(last=False)
        _STORES.move_to_end(key)
        return store


def output_compression(value: str | None) -> str | None:
    """The writers' compression argument for a configured one (``"none"``: none)."""
    return None if value in (None, "none") else value


@dataclass
class _Proposal:
    observed: Observed
    table: TableSchema
    changes: list[dict[str, Any]] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)


def _merge(seen: Observed, more: Observed) -> Observed:
    """Two observations of one input's columns as one: the types that hold both."""
    merged = dict(seen)
    for name, kind in more:
        before = merged.get(name)
        if before is None:
            merged[name] = kind
        elif kind is not None:
            merged[name] = widen(before, kind) or kind  # no rule: the contract says so
    return list(merged.items())


class InputTables:
    """The tables of one input (``record``) of ``pipeline`` in ``store``."""

    def __init__(
        self, pipeline: Pipeline, store: SchemaStore, record: InputRecord, run_id: str
    ) -> None:
        self.pipeline = pipeline
        self.options = pipeline.schema_
        self.store = store
        self.record = record
        self.run_id = run_id
        self.partition_keys = tuple(pipeline.output.partition_by)
        self.lineage = (
            Lineage(record.source_id, record.path, record.modified_time)
            if self.options.lineage
            else None
        )
        self._proposals: dict[str, _Proposal] = {}

    # ---- while rendering (inside the input's failure boundary) --------------------------------
    def prepare(self, sheet: str | None, frame: pd.DataFrame) -> Target:
        """Decide what this part of the input does to its table; the cast to use."""
        table = layout.table_name(self.pipeline.name, sheet)
        proposal = self._propose(table, observe_frame(frame, self.partition_keys))
        return Target(table, proposal.table, conformer(proposal.table, self.lineage))

    def grows(self, table: str, frame: pd.DataFrame) -> bool:
        """True (and the proposal widened) when ``frame`` needs more than the proposal holds."""
        before = self._proposals[table].table.fingerprint()
        after = self._propose(table, observe_frame(frame, self.partition_keys))
        return after.table.fingerprint() != before

    def _propose(self, table: str, observed: Observed) -> _Proposal:
        prior = self._proposals.get(table)
        base = prior.table if prior else self.store.cached().tables.get(table)
        outcome = reconcile(base, table, observed, self.options, self.partition_keys)
        if prior is None:
            proposal = _Proposal(list(observed), outcome.table, outcome.changes, outcome.dropped)
        else:
            prior.observed = _merge(prior.observed, observed)
            prior.table = outcome.table
            prior.changes += outcome.changes
            prior.dropped.update(outcome.dropped)
            proposal = prior
        self._proposals[table] = proposal
        return proposal

    # ---- after rendering ---------------------------------------------------------------------
    def commit(self) -> bool:
        """Save what the input changes in its tables; True when it must be rendered again
        (its tables are not the ones its outputs were cast to). ContractError: the newest
        table refuses it."""
        doc = self.store.cached()
        pending = {
            name: p for name, p in self._proposals.items() if p.changes or name not in doc.tables
        }
        if pending or doc.rewriting:
            doc = self.store.change(self._apply(pending))
        return self._stale(doc)

    def settle(self) -> bool:
        """After writing: True when a table changed since, so the input is rendered again.
        A rewrite left unfinished by a writer that died is finished here."""
        doc = self.store.read()
        if doc.rewriting:
            doc = self.store.finish_rewrites()
        return self._stale(doc)

    def _apply(self, pending: dict[str, _Proposal]) -> Any:
        def apply(doc: SchemaDoc) -> dict[str, TableSchema]:
            changed = {}
            for name, proposal in pending.items():
                current = doc.tables.get(name)
                outcome = reconcile(
                    current, name, proposal.observed, self.options, self.partition_keys
                )
                if not outcome.changes:
                    continue
                entry = {
                    "version": outcome.table.version,
                    "at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
                    "run_id": self.run_id,
                    "input": self.record.path,
                    "changes": outcome.changes,
                }
                history = (current.history if current else ()) + (entry,)
                changed[name] = replace(outcome.table, history=history)
            return changed

        return apply

    def _stale(self, doc: SchemaDoc) -> bool:
        stale = False
        notes = []
        for name, proposal in self._proposals.items():
            stored = doc.tables.get(name)
            if stored is None or stored.fingerprint() != proposal.table.fingerprint():
                stale = True
                continue
            note: dict[str, Any] = {"table": name, "version": stored.version}
            mine = [h for h in stored.history if h.get("run_id") == self.run_id]
            changes = [c for h in mine if h.get("input") == self.record.path for c in h["changes"]]
            if changes:
                note["changes"] = changes
            if proposal.dropped:
                note["dropped"] = dict(proposal.dropped)
            notes.append(note)
        if stale:
            self._proposals.clear()  # rendered again against the newest tables
        else:
            self.record.tables = notes
        return stale


def input_tables(
    pipeline: Pipeline, dest: Storage, record: InputRecord, run_id: str
) -> InputTables | None:
    """The tables of one input, or ``None`` for a pipeline with ``output.layout = "files"``."""
    if pipeline.output.layout != "table":
        return None
    return InputTables(pipeline, store_for(pipeline, dest), record, run_id)
