"""Catalog registration after a sync: Glue on moto server (real boto3), and BigQuery on a
loopback server that checks every request against the BigQuery v2 discovery document
(devstack/bigquery_local.py; no BigQuery emulator exists).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from devstack.bigquery_local import BigQueryLocal
from devstack.servers import MotoServer
from shared.cli import main
from tests.tables.conftest import STAGES, Folder, pipeline, sync

DATABASE = "lake"


def stage(folder: Folder, n: int) -> None:
    for relpath, text in STAGES[n].items():
        folder.write(relpath, text)


@pytest.fixture
def glue(moto_server: MotoServer, s3_env: dict[str, str]) -> Any:
    return moto_server.client("glue")


def test_glue_table_and_partitions_follow_the_table(
    s3_bucket: str, glue: Any, folder: Folder
) -> None:
    url = f"s3://{s3_bucket}/lake"
    p = pipeline(url, catalog={"glue": {"database": DATABASE}})
    stage(folder, 0)

    # No database yet: the registration fails, is recorded, and the run goes on.
    first = sync(p, folder)
    assert first.counts()["written"] == 1
    [failed] = first.catalog
    assert failed["status"] == "failed" and "database 'lake' does not exist" in failed["error"]

    # Next run (nothing changed in Drive): tried again, and registered.
    glue.create_database(DatabaseInput={"Name": DATABASE})
    second = sync(p, folder)
    assert [c["status"] for c in second.catalog] == ["registered"]
    table = glue.get_table(DatabaseName=DATABASE, Name="sales")["Table"]
    descriptor = table["StorageDescriptor"]
    assert descriptor["Location"] == f"s3://{s3_bucket}/lake/sales/"
    assert descriptor["SerdeInfo"]["SerializationLibrary"].endswith("ParquetHiveSerDe")
    assert descriptor["InputFormat"].endswith("MapredParquetInputFormat")
    assert [(c["Name"], c["Type"]) for c in descriptor["Columns"]] == [
        ("_drive_id", "string"),
        ("_drive_path", "string"),
        ("_drive_modified_time", "timestamp"),
        ("units", "bigint"),
        ("product", "string"),
        ("price", "bigint"),
    ]
    assert table["PartitionKeys"] == [{"Name": "region", "Type": "string"}]
    assert table["Parameters"]["drivepipe.schema_version"] == "1"
    assert partitions(glue) == {
        ("EU",): f"s3://{s3_bucket}/lake/sales/region=EU/",
        ("US",): f"s3://{s3_bucket}/lake/sales/region=US/",
    }

    # Nothing changed: nothing registered.
    assert sync(p, folder).catalog == []

    # A widening and a new partition: the table is updated (not duplicated), partitions follow.
    stage(folder, 1)
    folder.write("2025/apac.csv", "region,product,price,units\nAPAC,z,1.5,1\n")
    widened = sync(p, folder)
    assert [c["status"] for c in widened.catalog] == ["registered"]
    assert "updated" in widened.catalog[0]["actions"]
    assert [t["Name"] for t in glue.get_tables(DatabaseName=DATABASE)["TableList"]] == ["sales"]
    table = glue.get_table(DatabaseName=DATABASE, Name="sales")["Table"]
    columns = {c["Name"]: c["Type"] for c in table["StorageDescriptor"]["Columns"]}
    assert columns["price"] == "double"
    assert table["Parameters"]["drivepipe.schema_version"] == "2"
    assert set(partitions(glue)) == {("APAC",), ("EU",), ("US",)}
    for part in glue.get_partitions(DatabaseName=DATABASE, TableName="sales")["Partitions"]:
        assert {c["Name"]: c["Type"] for c in part["StorageDescriptor"]["Columns"]} == columns

    # The APAC input leaves Drive: its partition leaves Glue.
    (folder.root / "2025/apac.csv").unlink()
    removed = sync(p, folder)
    assert "partitions removed: 1" in removed.catalog[0]["actions"]
    assert set(partitions(glue)) == {("EU",), ("US",)}


def partitions(glue: Any) -> dict[tuple[str, ...], str]:
    found = glue.get_partitions(DatabaseName=DATABASE, TableName="sales")["Partitions"]
    return {tuple(p["Values"]): p["StorageDescriptor"]["Location"] for p in found}


@pytest.fixture
def bigquery(monkeypatch: pytest.MonkeyPatch) -> Iterator[BigQueryLocal]:
    with BigQueryLocal() as server:
        monkeypatch.setenv("BIGQUERY_API_URL", server.url)
        monkeypatch.delenv("BIGQUERY_ACCESS_TOKEN", raising=False)
        yield server


def test_bigquery_external_table_is_created_then_updated_on_a_schema_change(
    gcs_bucket: str, bigquery: BigQueryLocal, folder: Folder
) -> None:
    url = f"gs://{gcs_bucket}/lake"
    p = pipeline(url, catalog={"bigquery": {"project": "my-project", "dataset": "lake"}})
    stage(folder, 0)
    bigquery.fail_next.append((503, "backend unavailable"))
    first = sync(p, folder)
    assert first.catalog[0]["status"] == "failed" and "HTTP 503" in first.catalog[0]["error"]
    second = sync(p, folder)  # retried
    assert [c["status"] for c in second.catalog] == ["registered"]
    assert bigquery.rejected == []  # every request matched the discovery document
    [insert] = bigquery.calls("tables.insert")
    body = insert["body"]
    assert body["tableReference"] == {
        "projectId": "my-project",
        "datasetId": "lake",
        "tableId": "sales",
    }
    config = body["externalDataConfiguration"]
    assert config["sourceFormat"] == "PARQUET"
    assert config["sourceUris"] == [f"gs://{gcs_bucket}/lake/sales/*"]
    assert config["hivePartitioningOptions"] == {
        "mode": "STRINGS",
        "sourceUriPrefix": f"gs://{gcs_bucket}/lake/sales/",
        "requirePartitionFilter": False,
    }
    assert config["referenceFileSchemaUri"].startswith(f"gs://{gcs_bucket}/lake/sales/region=")
    assert body["labels"] == {"drivepipe_schema_version": "1"}

    assert sync(p, folder).catalog == []  # no schema change: no request
    before = len(bigquery.requests)
    stage(folder, 1)  # price widens
    third = sync(p, folder)
    assert [c["status"] for c in third.catalog] == ["registered"]
    [update] = bigquery.calls("tables.update")
    assert update["query"] == {"autodetect_schema": ["true"]}
    assert update["body"]["labels"] == {"drivepipe_schema_version": "2"}
    assert [r["method"] for r in bigquery.requests[before:]] == ["tables.get", "tables.update"]
    assert len(bigquery.calls("tables.insert")) == 1 and bigquery.rejected == []


def test_a_failed_registration_makes_the_cli_exit_1(
    tmp_path: Any, s3_bucket: str, glue: Any, folder: Folder, capsys: pytest.CaptureFixture[str]
) -> None:
    stage(folder, 0)
    config = tmp_path / "p.toml"
    config.write_text(
        f"""
[pipelines.sales]
source = {{ folder_id = "{folder.folder_id}" }}
output = {{ url = "s3://{s3_bucket}/lake", partition_by = ["region"] }}
catalog = {{ glue = {{ database = "missing" }} }}
"""
    )
    assert main(["sync", "--config", str(config)]) == 1
    assert "catalog glue missing.sales: failed glue: database 'missing'" in capsys.readouterr().out
