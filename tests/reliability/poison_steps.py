"""A custom step that kills its own process on one marked input, as an OOM kill or the
platform's timeout would: no exception, no cleanup, just a dead process (exit 137)."""

from __future__ import annotations

import os
from typing import Any


def die_on_poison(df: Any) -> Any:
    """Pass every table through, except one with a ``poison`` column: kill the process."""
    if "poison" in df.columns:
        os._exit(137)
    return df
