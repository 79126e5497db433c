"""Fetching and processing: the planned files downloaded in parallel, each processed as it
arrives under an attempt marker (:mod:`shared.run.attempts`), yielding its state entry."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Generator, Iterable, Sequence
from typing import TYPE_CHECKING, BinaryIO, NamedTuple

from shared.errors import DriveError
from shared.log import get_logger
from shared.run.attempts import Attempts, crash_reason
from shared.run.manifest import InputRecord
from shared.run.mirror import state_key
from shared.run.state import InputState
from shared.settings import runtime_settings

if TYPE_CHECKING:
    from shared.config import Pipeline
    from shared.drive import DriveClient, DriveFile
    from shared.run.plan import Planned
    from shared.storage import Storage

log = get_logger("pipeline")


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
) -> Generator[Processed, None, None]:
    """Fetch ``planned`` in parallel and process each file as it arrives, in arrival order.

    Downloads land in a per-call scratch directory (on Lambda, /tmp), one file per input, each
    removed once processed. Nothing is deleted here: outputs a written input no longer
    produces (:func:`stale_outputs`) go only after a saved state stops claiming them (the
    inline sync's checkpoints, a fanned-out run's finalizer). Storage errors propagate: the
    destination, not the input, failed. Close the iterator (``contextlib.closing``) if you
    stop early.
    """
    from shared.run.process import process_input, quarantine

    attempts = Attempts(dest, pipeline.name, run_id, runtime_settings().poison_attempts)
    # Keyed by the whole DriveFile: a shortcut and its target share an id, not a path.
    by_file = {p.file: p for p in planned}
    with tempfile.TemporaryDirectory(prefix="drivepipe-") as scratch:

        def scratch_path(file: DriveFile) -> str:
            name = hashlib.sha1(f"{file.id}/{file.path}".encode()).hexdigest()
            return os.path.join(scratch, name)

        def open_dest(file: DriveFile) -> BinaryIO:
            return open(scratch_path(file), "w+b")

        fetched = drive.fetch_many(
            list(by_file),
            open_dest,
            concurrency=max(1, min(pipeline.concurrency, len(by_file))),
            sheet_format=pipeline.read.sheets_export,
        )
        for file, result in fetched:
            _, fmt, record = by_file[file]
            path = scratch_path(file)
            if isinstance(result, DriveError):  # not the content's fault: retry next run
                record.status, record.error = "failed", f"download failed: {result}"
                entry = None
            else:
                key = state_key(file)
                crashes = attempts.begin(key, file)  # a marker while it is processed
                with open(path, "rb") as data:
                    if crashes >= attempts.limit:  # a poison pill: never processed again
                        quarantine(dest, data, record, run_id, crash_reason(crashes))
                    else:
                        try:
                            process_input(pipeline, dest, data, fmt, record, run_id)
                        except Exception:  # the run's error, not a crash on this input
                            attempts.abandon(key)
                            raise
                entry = _entry(file, record, run_id)
                _report(file, record)
                attempts.done(key)  # its outcome is known: no crash to count
            if os.path.exists(path):
                os.remove(path)
            yield Processed(file, record, entry)


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
    if record.status != "written":
        log.warning(
            "input failed",
            extra={
                "path": file.path,
                "error": record.error,
                "quarantine_key": record.quarantine_key,
            },
        )
