"""The one sync engine: the steps every Drive folder sync runs, inline or fanned out.

1. :func:`open_sync` (:mod:`shared.run.context`): the preamble. The folder to sync, a Drive
   client, the destination, a run id, the pipeline's sync lease (not for a dry run) and the
   state read under it.
2. :func:`plan` (:mod:`shared.run.plan`): list the folder once and decide each file's fate
   (unsupported, unchanged, failed before and unchanged, moved, removed, or to fetch), in a
   manifest; :func:`apply_mirror` applies its moves and says what to delete.
3. :func:`fetch_and_process` (:mod:`shared.run.fetch`): fetch the files to fetch in parallel
   and process each as it arrives, yielding what became of it and the state entry to record
   (``None``: forget it). Each input is processed under an attempt marker
   (:mod:`shared.run.attempts`): one that K invocations in a row died on is quarantined
   instead of processed again. Its downloads go through a :class:`shared.run.prefetch.Downloads`
   (one bound on requests in flight); an inline sync's start during step 2's walk, for the
   files the plan will certainly fetch, and nothing is written before the walk is complete.

:func:`shared.run.sync.run_planned` applies those results to the state inline, saving it at
checkpoints; a fan-out worker (:mod:`shared.run.fanout.worker`) collects them into its item
result instead, and the finalizer merges them. This module is the engine's front door: it
names the steps, and the modules above hold them.
"""

from __future__ import annotations

from shared.run.context import (
    LeaseFor,
    Progress,
    SyncContext,
    SyncRequest,
    open_store,
    open_sync,
    sync_lease,
)
from shared.run.fetch import Processed, fetch_and_process, stale_outputs
from shared.run.manifest import save_manifest
from shared.run.mirror import state_key
from shared.run.plan import MirrorChanges, Planned, Relocation, SyncPlan, apply_mirror, plan

__all__ = [
    "LeaseFor",
    "MirrorChanges",
    "Planned",
    "Processed",
    "Progress",
    "Relocation",
    "SyncContext",
    "SyncPlan",
    "SyncRequest",
    "apply_mirror",
    "fetch_and_process",
    "open_store",
    "open_sync",
    "plan",
    "save_manifest",
    "stale_outputs",
    "state_key",
    "sync_lease",
]
