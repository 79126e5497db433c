"""Work items (what a queue message carries) and item results (what a worker records).

A run that fans out keeps its bookkeeping beside the manifest, under ``_runs/<run_id>/``:
``plan.json`` (written by the planner before any item is sent), ``items/<item_id>.json`` (one
result per item, created once), ``errors/<item_id>.json`` (the last crash of an item, for
the dead-letter reason) and ``progress.json`` (what progress polls have read of the results so
far; a cache, never read by the finalizer). The finalizer is elected by the lease
``_locks/finalize/<run_id>/``. The keys are built in :mod:`shared.storage.layout`.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from shared.drive.models import DriveFile
from shared.errors import BadWorkItem
from shared.run.manifest import RUN_ID_PATTERN, InputRecord, utc_now

ITEM_VERSION = 1
ITEM_ID_PATTERN = re.compile(r"^i\d{5,}$")
ItemStatus = Literal["done", "failed"]


def item_id(index: int) -> str:
    """``i00000``, ``i00001``... sortable in plan order."""
    return f"i{index:05d}"


@dataclass(frozen=True)
class PlannedFile:
    """One Drive file of an item, and the reader format the planner chose for it."""

    file: DriveFile
    format: str
    output_path: str | None = None  # see shared.run.ownership
    renamed: str | None = None
    failed: str | None = None  # no output key (a clash): fetched only to quarantine it


def _file_json(planned: PlannedFile) -> dict[str, object]:
    body: dict[str, object] = {"file": asdict(planned.file), "format": planned.format}
    if planned.output_path is not None:
        body["output_path"], body["renamed"] = planned.output_path, planned.renamed
    if planned.failed is not None:
        body["failed"] = planned.failed
    return body


@dataclass(frozen=True)
class WorkItem:
    """One message: process these files for this run."""

    run_id: str
    item_id: str
    pipeline: str
    destination: str
    files: tuple[PlannedFile, ...]
    items_total: int = 0  # items in the run: lets a worker see completion without the plan

    def to_json(self) -> str:
        """The message body."""
        body = {
            "v": ITEM_VERSION,
            "run_id": self.run_id,
            "item_id": self.item_id,
            "pipeline": self.pipeline,
            "destination": self.destination,
            "files": [_file_json(p) for p in self.files],
            "items_total": self.items_total,
        }
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> WorkItem:
        """Parse a message body; :class:`BadWorkItem` says what is wrong."""
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadWorkItem(f"message body is not JSON: {exc}") from None
        if not isinstance(body, dict) or body.get("v") != ITEM_VERSION:
            raise BadWorkItem(f"not a version-{ITEM_VERSION} drivepipe work item")
        try:
            run_id, iid = str(body["run_id"]), str(body["item_id"])
            files = tuple(
                PlannedFile(
                    DriveFile(**entry["file"]),
                    str(entry["format"]),
                    entry.get("output_path"),
                    entry.get("renamed"),
                    entry.get("failed"),
                )
                for entry in body["files"]
            )
            total = int(body.get("items_total") or 0)
            item = cls(run_id, iid, str(body["pipeline"]), str(body["destination"]), files, total)
        except (KeyError, TypeError, ValueError) as exc:
            raise BadWorkItem(f"work item is missing or mistypes a field: {exc}") from None
        if not RUN_ID_PATTERN.match(run_id) or not ITEM_ID_PATTERN.match(iid):
            raise BadWorkItem(f"malformed run_id/item_id: {run_id!r}/{iid!r}")
        return item


@dataclass
class ItemResult:
    """What happened to one item: its input records and the state entries to merge.

    ``states`` maps a state key to an ``InputState`` dict to record, or to ``None`` to forget
    the input (a download failure or crash: try it again next run).
    """

    run_id: str
    item_id: str
    status: ItemStatus
    records: list[InputRecord]
    states: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    attempt: int = 1
    error: str | None = None
    finished_at: str = field(default_factory=utc_now)

    def to_json(self) -> bytes:
        """The stored result."""
        data = asdict(self)
        return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    def error_text(self) -> str:
        """``item i00003: <error>`` for notes and logs."""
        return f"item {self.item_id}: {self.error or 'no error recorded'}"

    @classmethod
    def from_json(cls, raw: bytes) -> ItemResult:
        """Read a stored result."""
        data = json.loads(raw)
        data["records"] = [InputRecord(**r) for r in data.get("records", [])]
        return cls(**data)
