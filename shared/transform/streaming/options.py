"""Streaming options: when and how big CSV/JSON Lines inputs are processed chunk by chunk.

Kept free of pandas/pyarrow imports (it is part of the pipeline config, loaded at cold start).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

BYTES_PER_MB = 1_000_000
# A row longer than a block restarts the input with blocks twice as big, up to this many blocks.
LONG_ROW_BLOCKS = 16


class StreamingOptions(BaseModel):
    """Inputs larger than ``threshold_mb`` stream through the steps in bounded memory.

    Only CSV/TSV and JSON Lines inputs stream. Memory is bounded by the reader's blocks in
    flight (pyarrow reads ahead several blocks; with 1 MB blocks a whole 2 GB sync peaks near
    330 MB, and the reader alone reached 790 MB with 16 MB blocks), plus ``batch_rows`` rows being
    transformed and at most ``batch_rows`` rows buffered for the writer. A row longer than a
    block restarts the input with bigger blocks (up to ``max_row_bytes``), so that input costs
    proportionally more memory.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold_mb: float = Field(
        default=256, ge=0, description="Stream inputs above this size (MB = 10^6 bytes)"
    )
    batch_rows: int = Field(
        default=131_072, ge=1, description="Most rows in one transformed batch / output row group"
    )
    block_mb: float = Field(
        default=1,
        gt=0,
        le=64,
        description="Raw text per parsed block; the CSV reader holds ~16 blocks in flight",
    )
    infer_mb: float = Field(
        default=4,
        ge=0,
        le=256,
        description="CSV head whose rows fix the column types (0: the first block only)",
    )
    max_partitions: int = Field(
        default=256, ge=1, description="Most partition values (open writers) of one input"
    )

    @property
    def threshold_bytes(self) -> int:
        """``threshold_mb`` in bytes."""
        return int(self.threshold_mb * BYTES_PER_MB)

    @property
    def infer_bytes(self) -> int:
        """``infer_mb`` in bytes."""
        return int(self.infer_mb * BYTES_PER_MB)

    @property
    def block_bytes(self) -> int:
        """``block_mb`` in bytes (at least 4 KiB)."""
        return max(4096, int(self.block_mb * BYTES_PER_MB))

    @property
    def max_row_bytes(self) -> int:
        """The longest row (CSV record, JSON line) that streams: ``LONG_ROW_BLOCKS`` blocks."""
        return LONG_ROW_BLOCKS * self.block_bytes
