"""A pipeline's tables at run time: the schema document and its changes (:mod:`.store`), one
input's outputs made to fit their tables (:mod:`.inputs`), and the tables told to Glue and
BigQuery at the end of a run (:mod:`.register`). See docs/tables.md.
"""
