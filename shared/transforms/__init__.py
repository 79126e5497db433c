"""Transforms: pure ``(DataFrame, **params) -> DataFrame`` steps, run in order by ``apply_steps``.

The specs (``Step``, ``validate_steps``) are pandas-free and imported eagerly, so a config can
be validated without pandas; the implementations load on first use of ``apply_steps`` & co.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shared.transforms.specs import Step, validate_steps

if TYPE_CHECKING:
    from shared.transforms.custom import load_custom
    from shared.transforms.runner import (
        REGISTRY,
        StepStat,
        apply_step,
        apply_steps,
        needs_whole_table,
        register,
    )

__all__ = [
    "REGISTRY",
    "Step",
    "StepStat",
    "apply_step",
    "apply_steps",
    "load_custom",
    "needs_whole_table",
    "register",
    "validate_steps",
]

_LAZY = {
    "REGISTRY": "shared.transforms.runner",
    "StepStat": "shared.transforms.runner",
    "apply_step": "shared.transforms.runner",
    "apply_steps": "shared.transforms.runner",
    "needs_whole_table": "shared.transforms.runner",
    "register": "shared.transforms.runner",
    "load_custom": "shared.transforms.custom",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
