"""Fan-out of large Drive syncs: a planner enqueues work items, workers process them.

- :mod:`.options`  ``[pipelines.x] fanout = { min_files, batch_size, max_attempts }``
- :mod:`.items`    work items, item results and where they live in the destination
- :mod:`.queues`   ``send_batch(items)`` over SQS (boto3) or Pub/Sub (REST)
- :mod:`.planner`  list + compare with state, write the plan, enqueue the items
- :mod:`.worker`   process one item (fetch + ``process_input``), record its result
- :mod:`.runs`     the one finalizer that assembles the manifest and state
- :mod:`.progress` ``GET /runs/<run_id>`` while a run is in flight (reads only new results)

Nothing here imports pandas at import time (the worker imports the pipeline lazily).
"""

from shared.run.fanout.options import FanoutOptions

__all__ = ["FanoutOptions"]
