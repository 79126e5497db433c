"""Incremental state kept in the destination, since function disks are ephemeral.

``_state/<pipeline>.json`` remembers, per input, what was last written successfully. It is
saved only after the outputs it claims are durable, so it never claims an input whose
output is missing. ``_state/events/`` holds one marker per processed storage event, which
makes at-least-once deliveries idempotent; a delivery *claims* its event first (a lease under
``_locks/events/``), so two concurrent deliveries never both process it.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared.errors import EventInProgress, StorageNotFound
from shared.run.lease import Lease
from shared.settings import runtime_settings
from shared.storage import layout

if TYPE_CHECKING:
    from shared.config import Pipeline
    from shared.storage import Storage

STATE_VERSION = 1
CRASHED = "crashed the function"  # a poison pill's error (shared.run.attempts): never rechecked


def definition_hash(pipeline: Pipeline) -> str:
    """A hash of everything that shapes a pipeline's outputs; a change re-processes all inputs."""
    shaping = pipeline.model_dump(mode="json", include={"read", "steps"})
    shaping["output"] = pipeline.output.model_dump(
        mode="json", include={"format", "compression", "partition_by", "keep_raw"}
    )
    shaping["formats"] = list(pipeline.source.formats)
    if pipeline.output.layout == "table" and not pipeline.schema_.lineage:
        shaping["lineage"] = False  # every output changes; absent by default, so hashes stay
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
    output_path: str | None = None  # what the outputs are named after, when not ``path``
    # The content failed, but on bytes Drive could not vouch for (an export: no checksum), so
    # the next run fetches it once more before reporting it "unchanged since it failed".
    recheck: bool = False


@dataclass
class SyncState:
    """The per-pipeline state document."""

    pipeline: str
    definition: str
    inputs: dict[str, InputState] = field(default_factory=dict)
    # The changes feed (shared.run.feed): {"token", "folder", "drive_id", "folders"}, or None.
    feed: dict[str, Any] | None = None
    dirty: bool = field(default=True, compare=False)  # a fresh state has never been saved
    # Keys no entry claims any more, to delete once this state is saved (shared.run.sync):
    # saved with it, so a crash between the save and the deletions leaves them to the next run.
    pending_deletes: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, storage: Storage, pipeline: str, definition: str) -> SyncState:
        """The stored state; a missing or changed-definition state starts empty."""
        try:
            raw = json.loads(storage.read(layout.sync_state_key(pipeline)))
        except StorageNotFound:
            return cls(pipeline, definition)
        if raw.get("version") != STATE_VERSION:
            return cls(pipeline, definition)
        pending = [str(k) for k in raw.get("pending_deletes", ())]
        if raw.get("definition") != definition:  # start over, but still delete what was doomed
            return cls(pipeline, definition, pending_deletes=pending)
        inputs = {k: InputState(**v) for k, v in raw.get("inputs", {}).items()}
        return cls(
            pipeline, definition, inputs, raw.get("feed"), dirty=False, pending_deletes=pending
        )

    def set_feed(self, feed: dict[str, Any] | None) -> None:
        """Remember (or, with ``None``, drop) the changes-feed position."""
        if self.feed != feed:
            self.feed = feed
            self.dirty = True

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
        """Remember an outcome (call only once its outputs or quarantine copy are durable).

        A content failure of an input without a Drive checksum gets ``recheck``, unless the
        run before failed on the same version too (then the failure is the content's).
        """
        if entry.error and entry.md5 is None and not entry.error.startswith(CRASHED):
            before = self.inputs.get(source_id)
            entry.recheck = not (
                before is not None
                and before.error is not None
                and before.modified_time == entry.modified_time
            )
        if self.inputs.get(source_id) != entry:
            self.inputs[source_id] = entry
            self.dirty = True

    def forget(self, source_id: str) -> None:
        """Drop an input, so the next run tries it again."""
        if self.inputs.pop(source_id, None) is not None:
            self.dirty = True

    def schedule_deletes(self, keys: Iterable[str]) -> None:
        """Keys to delete once this state is saved (none is deleted before it is)."""
        new = set(keys) - set(self.pending_deletes)
        if new:
            self.pending_deletes = sorted({*self.pending_deletes, *new})
            self.dirty = True

    def deletes_done(self, keys: Iterable[str]) -> None:
        """Forget pending deletions that were carried out (or found claimed again)."""
        done = set(keys)
        if done & set(self.pending_deletes):
            self.pending_deletes = [k for k in self.pending_deletes if k not in done]
            self.dirty = True

    def to_json(self) -> bytes:
        """The state document as UTF-8 JSON."""
        data: dict[str, Any] = {
            "version": STATE_VERSION,
            "pipeline": self.pipeline,
            "definition": self.definition,
            "inputs": {k: vars(v) for k, v in sorted(self.inputs.items())},
        }
        if self.feed is not None:
            data["feed"] = self.feed
        if self.pending_deletes:
            data["pending_deletes"] = self.pending_deletes
        return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    def save(self, storage: Storage) -> None:
        """Write the state atomically, if anything changed since it was loaded or saved."""
        if self.dirty:
            storage.write(
                layout.sync_state_key(self.pipeline),
                self.to_json(),
                content_type="application/json",
            )
            self.dirty = False


def event_seen(storage: Storage, dedupe_id: str) -> bool:
    """True when this exact event (object + version) was already processed."""
    return storage.exists(layout.event_marker_key(dedupe_id))


def mark_event(storage: Storage, dedupe_id: str, run_id: str) -> bool:
    """Record a processed event; False when another delivery recorded it first."""
    body = json.dumps({"event": dedupe_id, "run_id": run_id}).encode()
    return storage.create_if_absent(layout.event_marker_key(dedupe_id), body)


def event_claim(storage: Storage, dedupe_id: str) -> Lease:
    """The lease that one delivery of an event holds while it processes the event.

    Its TTL (``DRIVEPIPE_EVENT_CLAIM_SECONDS``, default 900 s) bounds how long a crashed
    claimant blocks the event: after it, a redelivery takes the claim over and processes it.
    """
    return Lease(storage, layout.event_lock(dedupe_id), ttl=runtime_settings().event_claim_seconds)


def claim_event(
    storage: Storage, dedupe_id: str, *, wait: float | None = None, poll: float = 0.1
) -> Lease | None:
    """Claim an event for processing; ``None`` when it was already processed.

    A delivery that finds a live claim waits up to ``wait`` seconds
    (``DRIVEPIPE_EVENT_WAIT_SECONDS``, default 10) for it to complete, then raises
    :class:`EventInProgress` so the cloud redelivers later. The completion marker is checked
    again once claimed, since the previous claimant may have finished just before.
    """
    if wait is None:
        wait = runtime_settings().event_wait_seconds
    lease = event_claim(storage, dedupe_id)
    deadline = time.monotonic() + wait
    while True:
        if event_seen(storage, dedupe_id):
            return None
        if lease.try_acquire() is not None:
            if event_seen(storage, dedupe_id):  # finished just before we took the claim
                lease.discard()
                return None
            return lease
        if time.monotonic() >= deadline:
            holder = lease.latest()
            until = holder.to_json().decode() if holder else "unknown"
            raise EventInProgress(f"{dedupe_id} is being processed by another delivery ({until})")
        time.sleep(poll)


def complete_event(storage: Storage, dedupe_id: str, run_id: str, claim: Lease) -> None:
    """Record the event as processed (outputs are durable by now), then drop its claim."""
    mark_event(storage, dedupe_id, run_id)
    claim.discard()
