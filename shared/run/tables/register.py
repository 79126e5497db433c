"""At the end of a run: tell the pipeline's catalogs (Glue, BigQuery) about its tables.

A table is registered when its schema or (for Glue) its set of partitions differs from what
the catalog was last told (``_schema/<pipeline>.catalog.json``). Each attempt is recorded in the
manifest's ``catalog`` list; a failure leaves the record of what the catalog knows unchanged,
so the next run tries again. Nothing here fails the run's inputs.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from shared.errors import CatalogError, StorageNotFound
from shared.log import get_logger
from shared.run.tables.store import SchemaStore
from shared.storage import layout
from shared.storage.catalog import CatalogTable
from shared.transform.tables.types import hive_type

if TYPE_CHECKING:
    from shared.config import Pipeline
    from shared.storage import Storage
    from shared.storage.catalog.options import CatalogOptions
    from shared.transform.tables.schema import TableSchema

log = get_logger("tables")
Clients = dict[str, Callable[[], Any]]  # "glue" / "bigquery" → client factory (tests swap them)


def _glue() -> Any:
    from shared.storage.catalog.glue import GlueCatalog

    return GlueCatalog()


def _bigquery() -> Any:
    from shared.storage.catalog.bigquery import BigQueryCatalog

    return BigQueryCatalog()


CLIENTS: Clients = {"glue": _glue, "bigquery": _bigquery}


def catalog_name(base: str | None, pipeline: str, table: str) -> str:
    """A table's name in a catalog: the configured one (default the pipeline's, made an
    identifier), with ``__<sheet>`` for a sheet's table."""
    root = base or re.sub(r"[^a-z0-9_]", "_", pipeline.lower())
    return f"{root}{table[len(pipeline) :]}"


def describe_table(
    dest: Storage, table: TableSchema, name: str, partition_keys: Sequence[str]
) -> CatalogTable:
    """``table`` as a catalog sees it, its partitions and reference file from its objects."""
    base = dest.base_url.rstrip("/") + "/"
    location = base + layout.table_dir(table.name)
    partitions: dict[tuple[str, ...], str] = {}
    reference = None
    for info in dest.list(layout.table_dir(table.name)):
        if not info.key.endswith(".parquet"):
            continue
        reference = reference or base + info.key
        folders = info.key.split("/")[1:-1]
        if len(folders) == len(partition_keys) and folders:
            values = tuple(unquote(f.split("=", 1)[1]) for f in folders)
            partitions[values] = base + "/".join(info.key.split("/")[:-1]) + "/"
    columns = [(c.name, hive_type(c.type)) for c in table.columns]
    return CatalogTable(
        name=name,
        location=location,
        columns=columns,
        partition_keys=list(partition_keys),
        partitions=sorted(partitions.items()),
        reference_file=reference,
        version=table.version,
        description=f"drivepipe table {table.name}, schema version {table.version}",
    )


def _digest(partitions: list[tuple[tuple[str, ...], str]]) -> str:
    return hashlib.sha256(json.dumps(partitions).encode()).hexdigest()[:16]


def register_tables(
    dest: Storage,
    pipeline: str,
    catalog: CatalogOptions,
    partition_by: Sequence[str],
    records: list[dict[str, Any]],
    *,
    clients: Clients | None = None,
) -> None:
    """Register every table of ``pipeline`` that changed since its catalogs last heard;
    append one record per attempt to ``records`` (the manifest's ``catalog``)."""
    if not (catalog.glue or catalog.bigquery):
        return
    factories = clients or CLIENTS
    doc = SchemaStore(dest, pipeline).read()
    key = layout.catalog_state_key(pipeline)
    try:
        known: dict[str, dict[str, Any]] = json.loads(dest.read(key))
    except StorageNotFound:
        known = {}
    told: dict[str, dict[str, Any]] = json.loads(json.dumps(known))
    for table in doc.tables.values():
        described = describe_table(dest, table, table.name, partition_by)
        if catalog.glue:
            glue = catalog.glue
            cat = replace(described, name=catalog_name(glue.table, pipeline, table.name))
            want = {"fingerprint": table.fingerprint(), "partitions": _digest(cat.partitions)}
            before = told.setdefault("glue", {}).get(table.name)
            if before != want:
                changed = before is None or before.get("fingerprint") != want["fingerprint"]
                where = f"{glue.database}.{cat.name}"
                call = partial(_glue_register, factories["glue"], glue.database, cat, changed)
                if _attempt(records, "glue", where, table, call):
                    told["glue"][table.name] = want
        if catalog.bigquery:
            bq = catalog.bigquery
            cat = replace(described, name=catalog_name(bq.table, pipeline, table.name))
            want = {"fingerprint": table.fingerprint()}
            if told.setdefault("bigquery", {}).get(table.name) == want:
                continue
            where = f"{bq.project}.{bq.dataset}.{cat.name}"
            if cat.reference_file is None:
                records.append(_record("bigquery", where, table, "waiting", "no file yet"))
                continue
            call = partial(_bq_register, factories["bigquery"], bq.project, bq.dataset, cat)
            if _attempt(records, "bigquery", where, table, call):
                told["bigquery"][table.name] = want
    if told != known:
        dest.write(key, json.dumps(told, indent=1).encode(), content_type="application/json")


def _glue_register(
    client: Callable[[], Any], database: str, table: CatalogTable, changed: bool
) -> list[str]:
    return list(client().register(database, table, schema_changed=changed))


def _bq_register(
    client: Callable[[], Any], project: str, dataset: str, table: CatalogTable
) -> list[str]:
    return list(client().register(project, dataset, table))


def _record(
    catalog: str, where: str, table: TableSchema, status: str, detail: Any = None
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "catalog": catalog,
        "table": where,
        "schema_version": table.version,
        "status": status,
    }
    if status == "failed":
        record["error"] = detail
    elif detail:
        record["actions"] = detail
    return record


def _attempt(
    records: list[dict[str, Any]],
    catalog: str,
    where: str,
    table: TableSchema,
    call: Callable[[], list[str]],
) -> bool:
    try:
        actions = call()
    except Exception as exc:  # never the run's failure: recorded, and tried again next run
        reason = str(exc) if isinstance(exc, CatalogError) else f"{type(exc).__name__}: {exc}"
        log.warning("catalog registration failed", extra={"catalog": catalog, "error": reason})
        records.append(_record(catalog, where, table, "failed", reason))
        return False
    records.append(_record(catalog, where, table, "registered", actions))
    return True


def register_pipeline(pipeline: Pipeline, dest: Storage, records: list[dict[str, Any]]) -> None:
    """:func:`register_tables` for a configured pipeline (a no-op without a catalog)."""
    if pipeline.output.layout != "table":
        return
    register_tables(dest, pipeline.name, pipeline.catalog, pipeline.output.partition_by, records)


def table_section(pipeline: Pipeline) -> dict[str, Any] | None:
    """What a fanned-out run's finalizer needs to register the tables (in the run's plan)."""
    catalog = pipeline.catalog
    if pipeline.output.layout != "table" or not (catalog.glue or catalog.bigquery):
        return None
    return {
        "catalog": catalog.model_dump(mode="json"),
        "partition_by": list(pipeline.output.partition_by),
    }


def register_from_plan(dest: Storage, plan: dict[str, Any], records: list[dict[str, Any]]) -> None:
    """:func:`register_tables` for a fanned-out run, from its plan."""
    from shared.storage.catalog.options import CatalogOptions

    section = plan.get("tables")
    if not section:
        return
    catalog = CatalogOptions.model_validate(section["catalog"])
    register_tables(dest, plan["pipeline"], catalog, section["partition_by"], records)
