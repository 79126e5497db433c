"""Fetching and processing: the planned files downloaded in parallel, each processed as it
arrives under an attempt marker (:mod:`shared.run.attempts`), yielding its state entry."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from contextlib import ExitStack
from typing import TYPE_CHECKING, BinaryIO, NamedTuple

from shared import deadline
from shared.errors import DriveError
from shared.log import get_logger
from shared.run.attempts import Attempts, crash_reason
from shared.run.manifest import InputRecord
from shared.run.mirror import state_key
from shared.run.ownership import quarantine_path
from shared.run.state import InputState
from shared.settings import runtime_settings

if TYPE_CHECKING:
    from shared.config import Pipeline
    from shared.drive import DriveClient, DriveFile, FetchResult
    from shared.run.plan import Planned
    from shared.storage import Storage

log = get_logger("pipeline")
# DriveClient.fetch_many's shape: (files, open_dest, concurrency=, sheet_format=) -> results.
FetchMany = Callable[..., Iterator[tuple["DriveFile", "FetchResult | DriveError"]]]


def scratch_file(scratch: str, file: DriveFile) -> str:
    """Where a download of ``file`` lands in the scratch directory ``scratch``."""
    name = hashlib.sha1(f"{file.id}/{file.path}".encode()).hexdigest()
    return os.path.join(scratch, name)


class Processed(NamedTuple):
    """What became of one fetched file; ``state`` is ``None`` when it is to be tried again."""

    file: DriveFile
    record: InputRecord
    state: InputState | None

    @property
    def key(self) -> str:
        """The file's state entry."""
        return state_key(self.file)


def stale_outputs(previous: Iterable[str], entry: InputState) -> set[str]:
    """The outputs an input produced before and no longer does (none when it failed now)."""
    return set() if entry.error else set(previous) - set(entry.output_keys)


def fetch_and_process(
    pipeline: Pipeline,
    dest: Storage,
    drive: DriveClient,
    planned: Sequence[Planned],
    run_id: str,
    *,
    fetch: FetchMany | None = None,
    scratch: str | None = None,
) -> Generator[Processed, None, None]:
    """Fetch ``planned`` in parallel and process each file as it arrives, in arrival order.

    Downloads land in a scratch directory (on Lambda, /tmp), one file per input
    (:func:`scratch_file`), each removed once processed: a per-call one, or ``scratch``
    (the caller's, left in place). ``fetch`` replaces ``drive.fetch_many`` (the engine's
    :class:`shared.run.prefetch.Downloads`, whose files may already be in ``scratch``).
    Nothing is deleted here: outputs a written input no longer produces
    (:func:`stale_outputs`) go only after a saved state stops claiming them (the inline
    sync's checkpoints, a fanned-out run's finalizer). Storage errors propagate: the
    destination, not the input, failed. Close the iterator (``contextlib.closing``) if you
    stop early.

    A file the plan already failed (an output key clash) is fetched only to keep a quarantine
    copy of its bytes. Within a deadline (:mod:`shared.deadline`), each input is processed
    within its share of the function's time; once only the reserve is left, the downloads stop
    and every file not processed yet is yielded ``deferred``. Those, and inputs that failed on
    a clash or a download, yield no state entry: the next run tries them again.
    """
    from shared.run.process import defer, process_input, quarantine

    attempts = Attempts(dest, pipeline.name, run_id, runtime_settings().poison_attempts)
    # Keyed by the whole DriveFile: a shortcut and its target share an id, not a path.
    by_file = {p.file: p for p in planned}
    with ExitStack() as stack:
        scratch_dir = scratch or stack.enter_context(
            tempfile.TemporaryDirectory(prefix="drivepipe-")
        )

        def scratch_path(file: DriveFile) -> str:
            return scratch_file(scratch_dir, file)

        def open_dest(file: DriveFile) -> BinaryIO:
            return open(scratch_path(file), "w+b")

        fetched = (fetch or drive.fetch_many)(
            list(by_file),
            open_dest,
            concurrency=max(1, min(pipeline.concurrency, len(by_file))),
            sheet_format=pipeline.read.sheets_export,
        )
        left: dict[DriveFile, None] = dict.fromkeys(by_file)  # not yielded yet, in order
        out_of_time = deadline.refusal()  # planning may have used the time up already
        for file, result in () if out_of_time else fetched:
            _, fmt, record = by_file[file]
            path = scratch_path(file)
            out_of_time = deadline.refusal()
            if out_of_time is not None:  # only the reserve is left: start nothing more
                break
            del left[file]
            if isinstance(result, DriveError):  # not the content's fault: retry next run
                why = f"download failed: {result}"
                if record.status == "failed":  # failed by the plan: no copy to keep either
                    why = f"{record.error} (no quarantine copy: {why})"
                record.status, record.error = "failed", why
                entry = None
            elif record.status == "failed":  # failed by the plan: keep its bytes, process none
                relpath = quarantine_path(file.id, file.path)
                with open(path, "rb") as data:
                    quarantine(dest, data, record, run_id, record.error or "", relpath=relpath)
                _report(file, record)
                entry = None
            else:
                key = state_key(file)
                crashes = attempts.begin(key, file)  # a marker while it is processed
                with open(path, "rb") as data:
                    if crashes >= attempts.limit:  # a poison pill: never processed again
                        quarantine(dest, data, record, run_id, crash_reason(crashes))
                    else:
                        try:
                            with deadline.for_input():
                                process_input(pipeline, dest, data, fmt, record, run_id)
                        except Exception:  # the run's error, not a crash on this input
                            attempts.abandon(key)
                            raise
                entry = None if record.status == "deferred" else _entry(file, record, run_id)
                _report(file, record)
                attempts.done(key)  # its outcome is known: no crash to count
            if os.path.exists(path):
                os.remove(path)
            yield Processed(file, record, entry)
        if out_of_time is not None:
            log.warning("out of time", extra={"not_started": len(left), "reason": out_of_time})
            close = getattr(fetched, "close", None)
            if close is not None:
                close()  # cancels the downloads not started (waits for the running ones)
            for file in left:
                record = by_file[file].record
                if record.status == "failed":  # failed by the plan: tried again next run
                    record.error = f"{record.error} (no quarantine copy: {out_of_time})"
                else:
                    defer(record, out_of_time)
                yield Processed(file, record, None)


def _entry(file: DriveFile, record: InputRecord, run_id: str) -> InputState:
    return InputState(
        md5=file.md5,
        modified_time=file.modified_time,
        size=file.size,
        path=file.path,
        output_keys=list(record.output_keys),
        run_id=run_id,
        error=record.error,
        quarantine_key=record.quarantine_key,
        output_path=record.output_path,
    )


def _report(file: DriveFile, record: InputRecord) -> None:
    if record.status == "deferred":
        log.warning("input deferred", extra={"path": file.path, "reason": record.error})
    elif record.status != "written":
        log.warning(
            "input failed",
            extra={
                "path": file.path,
                "error": record.error,
                "quarantine_key": record.quarantine_key,
            },
        )
