"""The per-pipeline fan-out setting (pandas-free: part of the config loaded at cold start)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_FINALIZE_SECONDS = 300


class FanoutOptions(BaseModel):
    """When a sync is spread over queue workers, and in what portions.

    A sync with at least ``min_files`` files to fetch is planned here and processed by workers,
    ``batch_size`` files per work item; smaller syncs run inline. ``max_attempts`` should equal
    the queue's redrive ``maxReceiveCount`` (SQS) or ``--max-delivery-attempts`` (Pub/Sub): on
    that delivery a crashing item is recorded as failed before it is dead-lettered.
    ``finalize_seconds`` is the finalizer's lease: a finalizer that dies blocks the run for at
    most this long, after which the next sync or item redelivery finishes the run; keep it
    below the queue's redelivery delay (SQS visibility timeout) so a redelivery finds it free.
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
    finalize_seconds: int = Field(
        default=DEFAULT_FINALIZE_SECONDS,
        ge=30,
        le=3600,
        description="The finalizer's lease (renewed while it works): how long a finalizer that "
        "died blocks the run before the next sync or item redelivery finishes it",
    )

    @model_validator(mode="after")
    def _finalizer_fits_in_the_run_lease(self) -> FanoutOptions:
        if self.finalize_seconds >= self.lease_seconds:
            raise ValueError(
                f"finalize_seconds ({self.finalize_seconds}) must be less than lease_seconds "
                f"({self.lease_seconds}); lower finalize_seconds or raise lease_seconds"
            )
        return self
