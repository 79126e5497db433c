"""Register a table in the AWS Glue Data Catalog: Parquet SerDe, columns, partition keys,
location, and one Glue partition per Hive folder, as Athena reads them.

Calls (the deploy policy allows exactly these): ``glue:GetTable``, ``glue:CreateTable``,
``glue:UpdateTable``, ``glue:GetPartitions``, ``glue:BatchCreatePartition``,
``glue:BatchUpdatePartition`` and ``glue:BatchDeletePartition``. The database must exist.
"""

from __future__ import annotations

from typing import Any

from shared.errors import CatalogError
from shared.storage.catalog import CatalogTable

SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
INPUT_FORMAT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
OUTPUT_FORMAT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
CREATE_BATCH, UPDATE_BATCH, DELETE_BATCH = 100, 100, 25  # Glue's per-call limits


def storage_descriptor(table: CatalogTable, location: str) -> dict[str, Any]:
    """Where and how a table (or one partition) is stored."""
    return {
        "Columns": [{"Name": name, "Type": kind} for name, kind in table.columns],
        "Location": location,
        "InputFormat": INPUT_FORMAT,
        "OutputFormat": OUTPUT_FORMAT,
        "SerdeInfo": {"SerializationLibrary": SERDE, "Parameters": {"serialization.format": "1"}},
        "StoredAsSubDirectories": False,
    }


def table_input(table: CatalogTable) -> dict[str, Any]:
    """The ``TableInput`` of ``create_table`` / ``update_table``."""
    return {
        "Name": table.name,
        "Description": table.description,
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {
            "classification": "parquet",
            "EXTERNAL": "TRUE",
            "drivepipe.schema_version": str(table.version),
        },
        "PartitionKeys": [{"Name": key, "Type": "string"} for key in table.partition_keys],
        "StorageDescriptor": storage_descriptor(table, table.location),
    }


class GlueCatalog:
    """A Glue client (boto3's, from the environment, unless one is given)."""

    def __init__(self, client: Any = None) -> None:
        if client is None:
            import boto3

            client = boto3.client("glue")
        self.glue = client

    def register(self, database: str, table: CatalogTable, *, schema_changed: bool) -> list[str]:
        """Create or update ``table`` in ``database`` and make its partitions match
        ``table.partitions``; what was done. ``CatalogError`` says what failed."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self._register(database, table, schema_changed)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise CatalogError(
                f"glue {database}.{table.name}: {error.get('Code')}: {error.get('Message')}"
            ) from None
        except BotoCoreError as exc:
            raise CatalogError(f"glue {database}.{table.name}: {exc}") from None

    def _register(self, database: str, table: CatalogTable, schema_changed: bool) -> list[str]:
        actions = []
        existing = self._get_table(database, table.name)
        if existing is None:
            self.glue.create_table(DatabaseName=database, TableInput=table_input(table))
            actions.append("created")
        elif schema_changed or self._differs(existing, table):
            self.glue.update_table(DatabaseName=database, TableInput=table_input(table))
            actions.append("updated")
        actions += self._sync_partitions(database, table, refresh=existing is not None)
        return actions

    def _get_table(self, database: str, name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self.glue.get_table(DatabaseName=database, Name=name)["Table"]
        except self.glue.exceptions.EntityNotFoundException as exc:
            message = str(exc.response.get("Error", {}).get("Message", "")).lower()
            if message.startswith("database"):
                raise CatalogError(
                    f"glue: database {database!r} does not exist (aws glue create-database "
                    f'--database-input \'{{"Name": "{database}"}}\')'
                ) from None
            return None
        return found

    @staticmethod
    def _differs(existing: dict[str, Any], table: CatalogTable) -> bool:
        wanted = table_input(table)
        descriptor = existing.get("StorageDescriptor", {})
        return (
            descriptor.get("Columns") != wanted["StorageDescriptor"]["Columns"]
            or descriptor.get("Location") != table.location
            or existing.get("PartitionKeys", []) != wanted["PartitionKeys"]
        )

    def _sync_partitions(self, database: str, table: CatalogTable, *, refresh: bool) -> list[str]:
        if not table.partition_keys:
            return []
        have: dict[tuple[str, ...], dict[str, Any]] = {}
        if refresh:
            pages = self.glue.get_paginator("get_partitions")
            for page in pages.paginate(DatabaseName=database, TableName=table.name):
                for part in page.get("Partitions", []):
                    have[tuple(part["Values"])] = part
        want = dict(table.partitions)
        new = [values for values in want if values not in have]
        gone = [values for values in have if values not in want]
        wanted_columns = [{"Name": n, "Type": t} for n, t in table.columns]
        stale = [
            values
            for values, part in have.items()
            if values in want
            and (
                part.get("StorageDescriptor", {}).get("Columns") != wanted_columns
                or part.get("StorageDescriptor", {}).get("Location") != want[values]
            )
        ]
        for start in range(0, len(new), CREATE_BATCH):
            entries = [
                {"Values": list(v), "StorageDescriptor": storage_descriptor(table, want[v])}
                for v in new[start : start + CREATE_BATCH]
            ]
            created = self.glue.batch_create_partition(
                DatabaseName=database, TableName=table.name, PartitionInputList=entries
            )
            self._check(created, "create")
        for start in range(0, len(stale), UPDATE_BATCH):
            updates = [
                {
                    "PartitionValueList": list(v),
                    "PartitionInput": {
                        "Values": list(v),
                        "StorageDescriptor": storage_descriptor(table, want[v]),
                    },
                }
                for v in stale[start : start + UPDATE_BATCH]
            ]
            updated = self.glue.batch_update_partition(
                DatabaseName=database, TableName=table.name, Entries=updates
            )
            self._check(updated, "update")
        for start in range(0, len(gone), DELETE_BATCH):
            doomed = [{"Values": list(v)} for v in gone[start : start + DELETE_BATCH]]
            deleted = self.glue.batch_delete_partition(
                DatabaseName=database, TableName=table.name, PartitionsToDelete=doomed
            )
            self._check(deleted, "delete")
        actions = []
        if new:
            actions.append(f"partitions added: {len(new)}")
        if stale:
            actions.append(f"partitions updated: {len(stale)}")
        if gone:
            actions.append(f"partitions removed: {len(gone)}")
        return actions

    @staticmethod
    def _check(response: dict[str, Any], what: str) -> None:
        errors = response.get("Errors") or []
        if errors:
            first = errors[0].get("ErrorDetail", {})
            raise CatalogError(
                f"glue: {len(errors)} partition(s) failed to {what}: "
                f"{first.get('ErrorCode')}: {first.get('ErrorMessage')}"
            )
