"""Where a sync of another folder than the pipeline's goes: its own state and outputs.

A ``folder_id`` override changes *what* is read. Written over the pipeline's outputs and
recorded in its state, another folder's rows would replace the table, and the next regular
sync would keep them as unchanged. So a request naming a folder other than the pipeline's
``source.folder_id`` is *scoped*: the pipeline it runs has its output URL moved under
:func:`shared.storage.layout.folder_scope` (``<destination>/_folders/<folder id>/``), so
its outputs, state, manifests, quarantine and locks are all its own. Folders the pipeline's
owner lists in ``source.alias_folder_ids`` sync into the pipeline's own state and outputs, as
does any folder for a pipeline that has no ``folder_id`` (nothing to protect there).

A scoped run registers no tables: its rows are not the pipeline's table, and telling Glue or
BigQuery about them would point the table's location at the isolated prefix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.storage import layout
from shared.storage.catalog.options import CatalogOptions

if TYPE_CHECKING:
    from shared.config import Pipeline


def is_foreign(pipeline: Pipeline, folder_id: str | None) -> bool:
    """True when syncing ``folder_id`` into ``pipeline`` must not touch its state or outputs."""
    source = pipeline.source
    if folder_id is None or source.folder_id is None or folder_id == source.folder_id:
        return False
    return folder_id not in source.alias_folder_ids


def scoped_url(url: str, folder_id: str) -> str:
    """``url`` (a destination) with the folder's isolated prefix appended."""
    return f"{url.rstrip('/')}/{layout.folder_scope(folder_id).rstrip('/')}"


def scope_pipeline(pipeline: Pipeline, folder_id: str | None) -> Pipeline:
    """``pipeline`` itself, or (for a foreign folder) a copy reading ``folder_id`` and writing
    under its own prefix of the destination. Scoping a scoped pipeline changes nothing."""
    if folder_id is None or not is_foreign(pipeline, folder_id):
        return pipeline
    output = pipeline.output.model_copy(update={"url": scoped_url(pipeline.output.url, folder_id)})
    source = pipeline.source.model_copy(update={"folder_id": folder_id, "alias_folder_ids": ()})
    return pipeline.model_copy(
        update={"output": output, "source": source, "catalog": CatalogOptions()}
    )
