"""Catalog registration: tell AWS Glue or BigQuery about a table's columns, location and
partitions. Each client takes a :class:`CatalogTable` (plain names and types, no pandas), so the
rest of drivepipe never imports boto3's Glue client or a BigQuery client.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class CatalogTable:
    """One table as a catalog sees it.

    ``columns``: (name, Hive type) in file order; ``partition_keys``: the Hive folders' names,
    in order (their values are strings); ``location``: the table's folder URL, ending in ``/``;
    ``partitions``: each partition's values and folder URL; ``reference_file``: one of its
    files (BigQuery reads the schema from it); ``version``: the schema version.
    """

    name: str
    location: str
    columns: list[tuple[str, str]]
    partition_keys: list[str] = field(default_factory=list)
    partitions: list[tuple[tuple[str, ...], str]] = field(default_factory=list)
    reference_file: str | None = None
    version: int = 1
    description: str = ""
