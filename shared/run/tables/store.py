"""The schema document of a pipeline, ``_schema/<pipeline>.json``, and how it changes.

Anyone may read it (it is written whole and atomically, as the state is). A change happens
only under the pipeline's schema lease (``_locks/schema/<pipeline>/``), which fan-out workers,
upload-triggered runs and inline syncs all take for it: the writer reads the newest document
under the lease, merges its input in, writes it, and then, still under the lease, rewrites
every Parquet file of the changed tables to the new schema (Parquet to Parquet, nothing is
downloaded from Drive again). Writers that changed nothing check the document again after
writing their outputs (:mod:`shared.transform.tables.inputs`), so a file written while a change
was being made is brought up to it by its own writer.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared.errors import StorageError, StorageNotFound
from shared.log import get_logger
from shared.run.lease import Lease
from shared.storage import layout
from shared.transform.tables.conform import parquet_bytes, rewrite_parquet
from shared.transform.tables.schema import TableSchema

if TYPE_CHECKING:
    from shared.storage import Storage

DOC_VERSION = 1
LOCK_WAIT_SECONDS = 300.0  # a change waits this long for another writer's change (and rewrites)
LEASE_TTL = 60.0  # renewed every 20 s while held: a writer that dies blocks changes for 60 s
log = get_logger("tables")


@dataclass
class SchemaDoc:
    """Every table of one pipeline; ``serial`` goes up with each change. ``rewriting``: the
    tables whose files a change is (or was, if its writer died) bringing up to it."""

    pipeline: str
    tables: dict[str, TableSchema] = field(default_factory=dict)
    serial: int = 0
    rewriting: tuple[str, ...] = ()

    def to_json(self) -> bytes:
        body: dict[str, Any] = {
            "version": DOC_VERSION,
            "pipeline": self.pipeline,
            "serial": self.serial,
            "tables": {name: t.to_json() for name, t in sorted(self.tables.items())},
        }
        if self.rewriting:
            body["rewriting"] = list(self.rewriting)
        return json.dumps(body, indent=1, ensure_ascii=False).encode("utf-8")

    @classmethod
    def from_json(cls, raw: bytes, pipeline: str) -> SchemaDoc:
        data: dict[str, Any] = json.loads(raw)
        if data.get("version") != DOC_VERSION:
            raise StorageError(f"schema document version {data.get('version')} is not supported")
        tables = {name: TableSchema.from_json(t) for name, t in data.get("tables", {}).items()}
        rewriting = tuple(data.get("rewriting", ()))
        return cls(data.get("pipeline", pipeline), tables, int(data.get("serial", 0)), rewriting)


@dataclass
class RewriteStats:
    """What a rewrite pass did: files looked at, rewritten, and their bytes before."""

    seen: int = 0
    rewritten: int = 0
    bytes_in: int = 0


class SchemaStore:
    """The schema document of ``pipeline`` in ``dest``, with a cached copy."""

    def __init__(
        self,
        dest: Storage,
        pipeline: str,
        *,
        fmt: str = "parquet",
        compression: str | None = None,
        lock_wait: float = LOCK_WAIT_SECONDS,
    ) -> None:
        self.dest = dest
        self.pipeline = pipeline
        self.fmt = fmt
        self.compression = compression
        self.lock_wait = lock_wait
        self.key = layout.schema_key(pipeline)
        self._doc: SchemaDoc | None = None

    def read(self) -> SchemaDoc:
        """The document as stored now (an empty one if there is none yet)."""
        try:
            raw = self.dest.read(self.key)
        except StorageNotFound:
            doc = SchemaDoc(self.pipeline)
        else:
            doc = SchemaDoc.from_json(raw, self.pipeline)
        self._doc = doc
        return doc

    def cached(self) -> SchemaDoc:
        """The document as last read (reading it the first time)."""
        return self._doc if self._doc is not None else self.read()

    def change(
        self, apply: Callable[[SchemaDoc], Mapping[str, TableSchema]], *, holder: str | None = None
    ) -> SchemaDoc:
        """Under the schema lease: ``apply`` the newest document (it returns the tables it
        changed), save it, and rewrite the changed tables' files. Returns the document.

        The tables being rewritten are listed in the document until their rewrite is done, so
        a rewrite that a dead writer left unfinished is finished by the next change (or by
        :meth:`finish_rewrites`).
        """
        lease = Lease(self.dest, layout.schema_lock(self.pipeline), ttl=LEASE_TTL, holder=holder)
        lease.acquire(wait=self.lock_wait)
        lease.start_renewing()
        try:
            doc = self.read()
            changed = dict(apply(doc))
            if not changed and not doc.rewriting:
                return doc
            pending = tuple(sorted(set(doc.rewriting) | set(changed)))
            doc = SchemaDoc(self.pipeline, {**doc.tables, **changed}, doc.serial + 1, pending)
            self._save(lease, doc)
            for name in pending:
                table = doc.tables.get(name)
                stats = self.rewrite(table) if table is not None else RewriteStats()
                log.info(
                    "table files brought to its schema",
                    extra={
                        "pipeline": self.pipeline,
                        "table": name,
                        "version": table.version if table else None,
                        "files_rewritten": stats.rewritten,
                    },
                )
            doc = SchemaDoc(self.pipeline, doc.tables, doc.serial, ())
            self._save(lease, doc)
            return doc
        finally:
            lease.release()

    def finish_rewrites(self) -> SchemaDoc:
        """Finish the rewrites a dead writer left (a no-op when there are none)."""
        doc = self.read()
        return self.change(lambda _doc: {}) if doc.rewriting else doc

    def _save(self, lease: Lease, doc: SchemaDoc) -> None:
        lease.check()  # LeaseLost: it expired and another writer changed it since
        self.dest.write(self.key, doc.to_json(), content_type="application/json")
        self._doc = doc

    def rewrite(self, table: TableSchema) -> RewriteStats:
        """Bring every Parquet file of ``table`` to its schema (call under the schema lease).

        A file that changes or goes while it is rewritten is left alone: its writer brings its
        own file up to date, and a deleted one must stay deleted.
        """
        stats = RewriteStats()
        if self.fmt != "parquet":
            return stats  # text formats carry no types; new columns go last (docs/tables.md)

        def write(arrow: Any) -> bytes:
            return parquet_bytes(arrow, self.compression)

        for info in list(self.dest.list(layout.table_dir(table.name))):
            if not info.key.endswith(".parquet"):
                continue
            stats.seen += 1
            try:
                data = self.dest.read(info.key)
            except StorageNotFound:
                continue
            try:
                fresh = rewrite_parquet(data, table, write)
            except (OSError, ValueError) as exc:  # pyarrow's errors derive from these
                log.warning("not a table file", extra={"key": info.key, "error": str(exc)})
                continue
            if fresh is data:
                continue
            now = self.dest.stat(info.key)
            if now is None or now.etag != info.etag:
                continue
            self.dest.write(info.key, fresh)
            stats.rewritten += 1
            stats.bytes_in += len(data)
        return stats
