"""``[pipelines.x.catalog]``: where a pipeline's tables are registered (pandas-free config)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

# Glue and BigQuery names: letters, digits and underscores (Glue lowercases table names).
_IDENT = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"


class GlueCatalog(BaseModel):
    """An AWS Glue Data Catalog database, and the table name (default: the pipeline's)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    database: str = Field(pattern=r"^[A-Za-z0-9_-]{1,255}$")
    table: str | None = Field(default=None, pattern=_IDENT)


class BigQueryCatalog(BaseModel):
    """A BigQuery dataset for an external table over the ``gs://`` location."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    project: str = Field(pattern=r"^[a-z][a-z0-9.:-]{4,61}[a-z0-9]$")
    dataset: str = Field(pattern=r"^[A-Za-z0-9_]{1,1024}$")
    table: str | None = Field(default=None, pattern=_IDENT)


class CatalogOptions(BaseModel):
    """Register the pipeline's tables in Glue (outputs on ``s3://``) and/or BigQuery
    (``gs://``), whenever their schema or partitions change."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    glue: GlueCatalog | None = None
    bigquery: BigQueryCatalog | None = None
