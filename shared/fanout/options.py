"""The per-pipeline fan-out setting (pandas-free: part of the config loaded at cold start)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class FanoutOptions(BaseModel):
    """When a sync is spread over queue workers, and in what portions.

    A sync with at least ``min_files`` files to fetch is planned here and processed by workers,
    ``batch_size`` files per work item; smaller syncs run inline. ``max_attempts`` should equal
    the queue's redrive ``maxReceiveCount`` (SQS) or ``--max-delivery-attempts`` (Pub/Sub): on
    that delivery a crashing item is recorded as failed before it is dead-lettered.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_files: int = Field(default=50, ge=1, description="Fan out from this many files to fetch")
    batch_size: int = Field(default=10, ge=1, le=100, description="Files per work item")
    max_attempts: int = Field(default=5, ge=1, le=100, description="Deliveries before DLQ")
    lease_seconds: int = Field(
        default=6 * 3600,
        ge=60,
        description="How long a fanned-out run holds the pipeline's sync lease at most; the "
        "finalizer releases it sooner, and a run that never finalizes frees it after this",
    )
