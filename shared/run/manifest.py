"""The run manifest: what happened to every input of one run, stored at ``_runs/<run id>.json``."""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from shared.storage.layout import run_key

if TYPE_CHECKING:
    from shared.drive import DriveFile
    from shared.storage import Storage

Status = Literal[
    "written",
    "skipped_unchanged",
    "skipped_unsupported",
    "failed",
    "moved",
    "removed",
    "removed_kept",
    "removal_blocked",
    "deferred",
    "planned",
]
STATUSES: tuple[Status, ...] = (
    "written",
    "skipped_unchanged",
    "skipped_unsupported",
    "failed",
    "moved",  # same Drive id at a new path: outputs moved, not downloaded again
    "removed",  # gone from the folder: outputs deleted (deleted_keys)
    "removed_kept",  # gone, outputs kept (on_removed = "keep")
    "removal_blocked",  # gone, but the removal guard (or a partial listing) kept everything
    "deferred",  # the function's time ran out first: not processed, left for the next run
    "planned",
)
RUN_ID_PATTERN = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")


def utc_now() -> str:
    """Now, as RFC 3339 UTC with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_run_id() -> str:
    """A sortable, unique run id such as ``20261122T001530Z-1a2b3c4d``."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(4)


@dataclass
class InputRecord:
    """One input's fate in a run."""

    source_id: str  # Drive file id, or the object URL for upload-triggered runs
    path: str  # path inside the Drive folder / incoming prefix
    mime_type: str | None = None
    md5: str | None = None
    size: int | None = None
    modified_time: str | None = None
    status: Status = "planned"
    output_keys: list[str] = field(default_factory=list)
    rows_in: int | None = None
    rows_out: int | None = None
    bytes_out: int = 0
    error: str | None = None
    quarantine_key: str | None = None
    raw_key: str | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    # Set when the outputs cannot be named after ``path`` (another input's key; see
    # shared.run.ownership): the path they are named after instead, and why.
    output_path: str | None = None
    renamed: str | None = None
    previous_path: str | None = None  # moved or renamed: the path it had before
    reason: str | None = None  # removed: why (deleted, trashed, moved out of the folder)
    deleted_keys: list[str] = field(default_factory=list)  # removed or moved: old keys deleted
    # output.layout = "table": per table written, its schema version, the changes this input
    # made to it and the columns left out of it (shared.run.tables.inputs).
    tables: list[dict[str, Any]] = field(default_factory=list)


def input_record(file: DriveFile) -> InputRecord:
    """A fresh manifest record for a Drive file (status ``planned``)."""
    return InputRecord(
        source_id=file.id,
        path=file.path,
        mime_type=file.mime_type,
        md5=file.md5,
        size=file.size,
        modified_time=file.modified_time,
    )


@dataclass
class RunManifest:
    """Everything a run did, written to the destination when it ends."""

    run_id: str
    pipeline: str
    trigger: str
    source: str
    destination: str
    dry_run: bool = False
    started_at: str = field(default_factory=utc_now)
    ended_at: str | None = None
    inputs: list[InputRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    removals_blocked: str | None = None  # why inputs gone from Drive were not removed
    drive: dict[str, int] | None = None  # Drive requests and retries the run made (inline)
    notifications: list[dict[str, Any]] = field(default_factory=list)  # delivery outcomes
    # Catalog registrations this run attempted (shared.run.tables.register): one per table and
    # catalog, "registered" or "failed" (tried again next run).
    catalog: list[dict[str, Any]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """How many inputs ended in each status (every status listed, zeros included)."""
        totals: dict[str, int] = dict.fromkeys(STATUSES, 0)
        for record in self.inputs:
            totals[record.status] += 1
        if not self.dry_run:
            totals.pop("planned")
        return totals

    @property
    def failed(self) -> list[InputRecord]:
        """The inputs that failed."""
        return [r for r in self.inputs if r.status == "failed"]

    @property
    def deferred(self) -> list[InputRecord]:
        """The inputs the function's time ran out before (the next run processes them)."""
        return [r for r in self.inputs if r.status == "deferred"]

    def note_deferred(self) -> None:
        """Say in the notes how many inputs were left for the next run, and why (once)."""
        deferred = self.deferred
        if deferred and not any(n.startswith("deferred:") for n in self.notes):
            self.notes.append(
                f"deferred: {len(deferred)} input(s) left for the next run, as the function's "
                f"time ran out (first: {deferred[0].path}: {deferred[0].error})"
            )

    @property
    def catalog_failed(self) -> list[dict[str, Any]]:
        """The catalog registrations that failed (they are tried again next run)."""
        return [c for c in self.catalog if c.get("status") == "failed"]

    def summary(self) -> dict[str, Any]:
        """The short form handlers return and ``--json`` prints."""
        return {
            "run_id": self.run_id,
            "pipeline": self.pipeline,
            "trigger": self.trigger,
            "dry_run": self.dry_run,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "destination": self.destination,
            "manifest": None
            if self.dry_run
            else f"{self.destination.rstrip('/')}/{run_key(self.run_id)}",
            "counts": self.counts(),
            "rows_out": sum(r.rows_out or 0 for r in self.inputs if r.status == "written"),
            "bytes_out": sum(r.bytes_out for r in self.inputs),
            "failed": [
                {"path": r.path, "error": r.error, "quarantine_key": r.quarantine_key}
                for r in self.failed
            ],
            "deferred": [{"path": r.path, "reason": r.error} for r in self.deferred],
            "notes": list(self.notes),
            "removals_blocked": self.removals_blocked,
            "catalog": list(self.catalog),
        }

    def to_dict(self) -> dict[str, Any]:
        """The full manifest as JSON-able data."""
        data = asdict(self)
        data["counts"] = self.counts()
        return data

    def to_json(self) -> bytes:
        """The full manifest, pretty-printed UTF-8 JSON."""
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False).encode("utf-8")


def save_manifest(dest: Storage, manifest: RunManifest) -> None:
    """Stamp the manifest's end and write it (a dry run writes nothing)."""
    manifest.ended_at = utc_now()
    if not manifest.dry_run:
        dest.write(run_key(manifest.run_id), manifest.to_json(), content_type="application/json")
