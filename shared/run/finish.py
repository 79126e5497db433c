"""What happens once a run's manifest is final: store it, tell people, index it, measure it.

1. The manifest is written first: it is the run's record, whatever happens next.
2. Notifications (:mod:`shared.run.notify`), when the pipeline's ``notify`` asks for them; the
   delivery outcomes go into the manifest, which is written again.
3. The history index entries (:mod:`shared.run.history`), so ``runs list`` finds the run.
4. The metric line (:mod:`shared.run.metrics`).

Steps 2 to 4 never raise: a notification, index or metric failure is logged and the run keeps
its outcome (a run missing from the index is found again by ``drivepipe runs reindex``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from shared.log import get_logger
from shared.run.manifest import save_manifest
from shared.storage.layout import run_key

if TYPE_CHECKING:
    from shared.run.manifest import RunManifest
    from shared.run.notify.deliver import Sleep
    from shared.run.notify.options import NotifyOptions
    from shared.storage import Storage

log = get_logger("finish")


def finish_run(
    dest: Storage,
    manifest: RunManifest,
    *,
    notify: NotifyOptions | None = None,
    sleep: Sleep = time.sleep,
) -> None:
    """Stamp and write the manifest (a dry run writes nothing), then :func:`report_run`."""
    save_manifest(dest, manifest)
    report_run(dest, manifest, notify=notify, sleep=sleep)


def report_run(
    dest: Storage,
    manifest: RunManifest,
    *,
    notify: NotifyOptions | None = None,
    sleep: Sleep = time.sleep,
) -> None:
    """Steps 2 to 4 for a manifest already written to ``dest``; never raises."""
    if manifest.dry_run:
        return
    fields = {"run_id": manifest.run_id, "pipeline": manifest.pipeline}
    try:
        from shared.run.notify.deliver import notify_run

        deliveries = notify_run(dest, manifest, notify, sleep=sleep)
        if deliveries:
            manifest.notifications = [d.to_dict() for d in deliveries]
            dest.write(
                run_key(manifest.run_id), manifest.to_json(), content_type="application/json"
            )
    except Exception as exc:
        log.error("notifications failed", extra={**fields, "error": f"{type(exc).__name__}: {exc}"})
    try:
        from shared.run.history import index_run

        index_run(dest, manifest)
    except Exception as exc:
        log.error(
            "run not indexed; `drivepipe runs reindex` adds it",
            extra={**fields, "error": f"{type(exc).__name__}: {exc}"},
        )
    try:
        from shared.run.metrics import emit_metrics

        emit_metrics(manifest)
    except Exception as exc:
        log.error("run metrics not written", extra={**fields, "error": str(exc)})
