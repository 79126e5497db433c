"""Tables, not files: each pipeline writes one table (one per sheet name for workbooks read
sheet by sheet) whose schema is kept in the destination (``_schema/<pipeline>.json``).

This package is the pure part: :mod:`.options` (``[pipelines.x.schema]``, pandas-free),
:mod:`.types` (the column types and the widening ladder), :mod:`.schema` (a table's schema and
what an input does to it under the contract) and :mod:`.conform` (data cast to a table's
schema, lineage columns included). The bookkeeping (the schema document, its lease, rewrites,
catalog registration) is :mod:`shared.run.tables`. See docs/tables.md.
"""
