"""Register a table in BigQuery: an external table over its ``gs://`` folder, Parquet, with
Hive partitioning (``STRINGS``: partition values are strings, as in Glue), created with
``tables.insert`` and brought up to a new schema with ``tables.update?autodetect_schema=true``.

BigQuery reads a Parquet table's schema from its files; ``referenceFileSchemaUri`` names the
file to read it from (every file of a table has the same schema). Requests are plain REST
(``requests`` + google-auth): paths and bodies follow the BigQuery v2 discovery document,
which the tests check every request against (no BigQuery emulator exists; docs/tables.md).

The function's service account needs ``bigquery.tables.get``, ``bigquery.tables.create`` and
``bigquery.tables.update`` on the dataset (``roles/bigquery.dataEditor``), plus
``storage.objects.get`` and ``storage.objects.list`` on the bucket, which BigQuery checks when
it reads the reference file.
"""

from __future__ import annotations

import os
from typing import Any

from shared.errors import CatalogError
from shared.storage.catalog import CatalogTable

API_URL_ENV = "BIGQUERY_API_URL"  # another endpoint (a local stand-in); default Google's
TOKEN_ENV = "BIGQUERY_ACCESS_TOKEN"  # a ready bearer token; default: application credentials
DEFAULT_API_URL = "https://bigquery.googleapis.com/bigquery/v2/"
SCOPE = "https://www.googleapis.com/auth/bigquery"
TIMEOUT = (10, 60)


def table_resource(project: str, dataset: str, table: CatalogTable) -> dict[str, Any]:
    """The ``Table`` resource of an external Parquet table over ``table.location``."""
    config: dict[str, Any] = {
        "sourceFormat": "PARQUET",
        "sourceUris": [f"{table.location}*"],
    }
    if table.reference_file:
        config["referenceFileSchemaUri"] = table.reference_file
    if table.partition_keys:
        config["hivePartitioningOptions"] = {
            "mode": "STRINGS",
            "sourceUriPrefix": table.location,
            "requirePartitionFilter": False,
        }
    return {
        "tableReference": {"projectId": project, "datasetId": dataset, "tableId": table.name},
        "description": table.description,
        "labels": {"drivepipe_schema_version": str(table.version)},
        "externalDataConfiguration": config,
    }


def _session() -> Any:
    import requests

    token = os.environ.get(TOKEN_ENV)
    if token or os.environ.get(API_URL_ENV):
        session = requests.Session()
        if token:
            session.headers["Authorization"] = f"Bearer {token}"
        return session
    import google.auth
    from google.auth.transport.requests import AuthorizedSession

    credentials, _ = google.auth.default(scopes=[SCOPE])
    return AuthorizedSession(credentials)


class BigQueryCatalog:
    """BigQuery's REST API at ``BIGQUERY_API_URL`` (default Google's)."""

    def __init__(self, session: Any = None, base_url: str | None = None) -> None:
        self.session = session if session is not None else _session()
        base = base_url or os.environ.get(API_URL_ENV) or DEFAULT_API_URL
        self.base_url = base if base.endswith("/") else base + "/"

    def register(self, project: str, dataset: str, table: CatalogTable) -> list[str]:
        """Create the external table, or update it to ``table``'s schema; what was done."""
        import requests

        tables = f"{self.base_url}projects/{project}/datasets/{dataset}/tables"
        body = table_resource(project, dataset, table)
        where = f"bigquery {project}.{dataset}.{table.name}"
        try:
            found = self.session.get(f"{tables}/{table.name}", timeout=TIMEOUT)
            if found.status_code == 404:
                answer = self.session.post(tables, json=body, timeout=TIMEOUT)
                action = "created"
            else:
                _check(found, where)
                answer = self.session.put(
                    f"{tables}/{table.name}",
                    params={"autodetect_schema": "true"},
                    json=body,
                    timeout=TIMEOUT,
                )
                action = "updated"
        except requests.RequestException as exc:
            raise CatalogError(f"{where}: {exc}") from None
        _check(answer, where)
        return [action]


def _check(response: Any, where: str) -> None:
    if response.status_code < 300:
        return
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text[:300]
    raise CatalogError(f"{where}: HTTP {response.status_code}: {message}")
