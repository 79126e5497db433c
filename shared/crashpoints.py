"""Crash points: named places where a fault-injection test can SIGKILL the running process.

``DRIVEPIPE_CRASH_AT=<point>[:<n>][,<point>[:<n>]...]`` kills the process with SIGKILL the
``n``-th time (default the first) it reaches ``<point>``. Unset (always, outside tests), a
crash point costs one environment lookup. It exists so tests and ``bench.campaign`` can show,
with real processes, that a kill at any of these places leaves the destination consistent:

=====================  ===================================================================
point                  where
=====================  ===================================================================
``processing``         an input's bytes are fetched and its attempt marker written; nothing
                       of it rendered yet (shared.run.process)
``outputs_written``    every output of an input is at its final key; the state does not
                       know yet (shared.run.process)
``state_saved``        a checkpoint's state save, before the keys it no longer claims are
                       deleted (shared.run.sync)
``mirror_saved``       the state without moved/removed entries is saved, before their old
                       keys are deleted (shared.run.sync)
``before_manifest``    every input recorded and the state saved; the manifest not written
``mid_write``          part of an object's bytes sent: a local temp file written but not
                       renamed, an S3 multipart upload with parts, a GCS resumable session
                       with a chunk (shared.storage)
=====================  ===================================================================

Nothing here imports anything of drivepipe, so every layer may call :func:`crash_point`.
"""

from __future__ import annotations

import os
import signal
import threading

CRASH_ENV = "DRIVEPIPE_CRASH_AT"
POINTS = (
    "processing",
    "outputs_written",
    "state_saved",
    "mirror_saved",
    "before_manifest",
    "mid_write",
)
_hits: dict[str, int] = {}
_lock = threading.Lock()


def parse(spec: str) -> dict[str, int]:
    """``"state_saved:2,mid_write"`` → ``{"state_saved": 2, "mid_write": 1}``; ValueError
    naming the variable for an unknown point or a count that is not a positive integer."""
    wanted: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, count = part.partition(":")
        if name not in POINTS:
            raise ValueError(f"{CRASH_ENV}: unknown crash point {name!r}; known: {POINTS}")
        if count and not (count.isdigit() and int(count) > 0):
            raise ValueError(f"{CRASH_ENV}: {part!r}: the count must be a positive integer")
        wanted[name] = int(count or 1)
    return wanted


def armed(name: str) -> bool:
    """True when ``DRIVEPIPE_CRASH_AT`` names ``name`` (to skip instrumentation otherwise)."""
    spec = os.environ.get(CRASH_ENV)
    return name in parse(spec) if spec else False


def crash_point(name: str) -> None:
    """SIGKILL this process if ``DRIVEPIPE_CRASH_AT`` names ``name`` and this is the n-th hit."""
    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return
    wanted = parse(spec).get(name)
    if wanted is None:
        return
    with _lock:
        _hits[name] = _hits.get(name, 0) + 1
        hit = _hits[name]
    if hit == wanted:
        os.kill(os.getpid(), signal.SIGKILL)
