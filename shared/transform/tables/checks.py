"""Config checks for tables (pandas-free): what ``Pipeline`` refuses when the file is loaded."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.config import Pipeline

BIGQUERY_MAX_PARTITION_KEYS = 10  # BigQuery's hive partitioning limit


def table_problems(pipeline: Pipeline) -> list[str]:
    """``field: reason`` for each table setting the pipeline cannot honour."""
    output, schema, catalog = pipeline.output, pipeline.schema_, pipeline.catalog
    problems = []
    declared = set(schema.columns)
    if output.layout == "files":
        if declared or schema.contract != "evolve":
            problems.append('schema: needs output.layout = "table" (the default)')
        if catalog.glue or catalog.bigquery:
            problems.append('catalog: needs output.layout = "table" (the default)')
        return problems
    if pipeline.name.startswith(("_", ".")):
        problems.append(
            f"name: {pipeline.name!r} cannot name a table folder (Athena and Hive skip names "
            'starting with "_" or "."); rename the pipeline or set output.layout = "files"'
        )
    both = declared & set(output.partition_by)
    if both:
        problems.append(
            f"schema.columns: {', '.join(sorted(both))} are partition columns (their values "
            "are folder names, not file columns)"
        )
    if (catalog.glue or catalog.bigquery) and output.format != "parquet":
        problems.append('catalog: registers Parquet tables only (output.format = "parquet")')
    if catalog.glue and not output.url.startswith("s3://"):
        problems.append("catalog.glue: needs an s3:// output.url")
    if catalog.bigquery:
        if not output.url.startswith("gs://"):
            problems.append("catalog.bigquery: needs a gs:// output.url")
        if len(output.partition_by) > BIGQUERY_MAX_PARTITION_KEYS:
            problems.append(
                f"catalog.bigquery: BigQuery takes at most {BIGQUERY_MAX_PARTITION_KEYS} "
                "partition keys"
            )
    return problems
