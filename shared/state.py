"""Incremental state kept in the destination, since function disks are ephemeral.

``_state/<pipeline>.json`` remembers, per input, what was last written successfully. It is
saved only after the outputs it claims are durable, so it never claims an input whose
output is missing. ``_state/events/`` holds one marker per processed storage event, which
makes at-least-once deliveries idempotent.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared.storage import StorageNotFound

if TYPE_CHECKING:
    from shared.config import Pipeline
    from shared.storage import Storage

STATE_VERSION = 1


def definition_hash(pipeline: Pipeline) -> str:
    """A hash of everything that shapes a pipeline's outputs; a change re-processes all inputs."""
    shaping = pipeline.model_dump(mode="json", include={"read", "steps"})
    shaping["output"] = pipeline.output.model_dump(
        mode="json", include={"format", "compression", "partition_by", "keep_raw"}
    )
    shaping["formats"] = list(pipeline.source.formats)
    canonical = json.dumps(shaping, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass
class InputState:
    """What the last run that processed an input made of it.

    ``error`` is set when the input's content failed (it was quarantined): an unchanged input
    that failed is reported again without being re-fetched or quarantined twice.
    """

    md5: str | None
    modified_time: str | None
    size: int | None
    path: str
    output_keys: list[str]
    run_id: str
    error: str | None = None
    quarantine_key: str | None = None


@dataclass
class SyncState:
    """The per-pipeline state document."""

    pipeline: str
    definition: str
    inputs: dict[str, InputState] = field(default_factory=dict)
    dirty: bool = field(default=True, compare=False)  # a fresh state has never been saved

    @staticmethod
    def key(pipeline: str) -> str:
        """Where a pipeline's state lives in its destination."""
        return f"_state/{pipeline}.json"

    @classmethod
    def load(cls, storage: Storage, pipeline: str, definition: str) -> SyncState:
        """The stored state; a missing or changed-definition state starts empty."""
        try:
            raw = json.loads(storage.read(cls.key(pipeline)))
        except StorageNotFound:
            return cls(pipeline, definition)
        if raw.get("version") != STATE_VERSION or raw.get("definition") != definition:
            return cls(pipeline, definition)
        inputs = {k: InputState(**v) for k, v in raw.get("inputs", {}).items()}
        return cls(pipeline, definition, inputs, dirty=False)

    def is_unchanged(
        self, source_id: str, *, md5: str | None, modified_time: str | None, size: int | None
    ) -> bool:
        """True when this input was written before and has not changed since.

        Binary files compare by md5 (and size); native files, which have no md5, by modifiedTime.
        """
        seen = self.inputs.get(source_id)
        if seen is None:
            return False
        if md5 is not None:
            return seen.md5 == md5 and (size is None or seen.size == size)
        return modified_time is not None and seen.modified_time == modified_time

    def record(self, source_id: str, entry: InputState) -> None:
        """Remember an outcome (call only once its outputs or quarantine copy are durable)."""
        if self.inputs.get(source_id) != entry:
            self.inputs[source_id] = entry
            self.dirty = True

    def forget(self, source_id: str) -> None:
        """Drop an input, so the next run tries it again."""
        if self.inputs.pop(source_id, None) is not None:
            self.dirty = True

    def to_json(self) -> bytes:
        """The state document as UTF-8 JSON."""
        data: dict[str, Any] = {
            "version": STATE_VERSION,
            "pipeline": self.pipeline,
            "definition": self.definition,
            "inputs": {k: vars(v) for k, v in sorted(self.inputs.items())},
        }
        return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    def save(self, storage: Storage) -> None:
        """Write the state atomically, if anything changed since it was loaded or saved."""
        if self.dirty:
            storage.write(self.key(self.pipeline), self.to_json(), content_type="application/json")
            self.dirty = False


def event_marker_key(dedupe_id: str) -> str:
    """The marker recording that one storage event was processed."""
    return f"_state/events/{hashlib.sha256(dedupe_id.encode()).hexdigest()}.json"


def event_seen(storage: Storage, dedupe_id: str) -> bool:
    """True when this exact event (object + version) was already processed."""
    return storage.exists(event_marker_key(dedupe_id))


def mark_event(storage: Storage, dedupe_id: str, run_id: str) -> bool:
    """Record a processed event; False when another delivery recorded it first."""
    body = json.dumps({"event": dedupe_id, "run_id": run_id}).encode()
    return storage.create_if_absent(event_marker_key(dedupe_id), body)
