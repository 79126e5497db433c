"""The one vendoring routine: copy the core (``shared/``) into a cloud's deploy source.

Both clouds upload only their own folder (Chalice packages ``vendor/``; gcloud uploads
``--source``), so the core travels as a copy. A copy is always made anew from the working
tree, without caches, so a stale one can never be deployed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DIR = REPO_ROOT / "shared"
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", ".mypy_cache")


def vendor_shared(parent: Path, shared_dir: Path = SHARED_DIR, *, fresh: bool = False) -> Path:
    """Copy ``shared_dir`` to ``parent/shared`` (replacing an older copy) and return it.

    ``fresh`` empties ``parent`` first (Chalice's ``vendor/``, which holds nothing else of ours).
    """
    target = parent / "shared"
    if target.resolve() == shared_dir.resolve():
        raise ValueError("refusing to vendor shared/ onto itself")
    if fresh and parent.exists():
        shutil.rmtree(parent)
    elif target.exists():
        shutil.rmtree(target)
    shutil.copytree(shared_dir, target, ignore=IGNORED)
    return target
