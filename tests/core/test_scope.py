"""A sync of another folder is scoped: its own prefix, and no catalog registration."""

from __future__ import annotations

from shared.config import Pipeline, parse_config
from shared.run.scope import is_foreign, scope_pipeline

CONFIG = {
    "pipelines": {
        "sales": {
            "source": {"folder_id": "1Prod", "alias_folder_ids": ["1Alias"]},
            "output": {"url": "s3://lake/sales"},
            "catalog": {"glue": {"database": "lake"}},
        }
    }
}


def pipeline() -> Pipeline:
    return parse_config(CONFIG).pipelines["sales"]


def test_the_pipelines_own_folder_and_its_aliases_are_not_foreign() -> None:
    sales = pipeline()
    assert not is_foreign(sales, None) and not is_foreign(sales, "1Prod")
    assert not is_foreign(sales, "1Alias") and is_foreign(sales, "1Other")
    assert scope_pipeline(sales, "1Alias") is sales


def test_a_foreign_folder_writes_under_its_own_prefix_and_registers_no_table() -> None:
    scoped = scope_pipeline(pipeline(), "1Other")
    assert scoped.output.url == "s3://lake/sales/_folders/1Other"
    assert scoped.source.folder_id == "1Other" and scoped.source.alias_folder_ids == ()
    assert scoped.catalog.glue is None and scoped.catalog.bigquery is None
    assert scope_pipeline(scoped, "1Other").output.url == scoped.output.url  # idempotent
