"""The mirror scenario of issue 13, shared by the inline and the fanned-out tests.

A Drive root with the synced folder ``lake/`` and a sibling ``elsewhere/``. After a first sync
the Drive side deletes a file, trashes one, renames one, moves one to another folder, edits
one, adds one and moves one out of ``lake/`` (all moves by ``os.rename``, so ids are kept).
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from shared.config import Pipeline, parse_config
from shared.run.manifest import RunManifest
from shared.storage import layout, open_storage

FOLDER = "lake"
FILES = {
    "keep/a.csv": "region,units\nEU,1\n",
    "keep/b.csv": "region,units\nUS,2\n",  # deleted
    "keep/c.csv": "region,units\nEU,3\n",  # trashed
    "keep/d.csv": "region,units\nUS,4\n",  # renamed to keep/d2.csv
    "keep/e.csv": "region,units\nEU,5\n",  # moved to other/e.csv
    "keep/f.csv": "region,units\nUS,6\n",  # edited
    "g.csv": "region,units\nEU,7\n",  # moved out, to ../elsewhere/g.csv
    "other/h.csv": "region,units\nUS,8\n",
    "other/i.csv": "region,units\nEU,9\n",
    "other/j.csv": "region,units\nUS,10\n",
}
# After the changes: each current path and the units its table holds.
AFTER = {
    "keep/a.csv": 1,
    "keep/d2.csv": 4,
    "other/e.csv": 5,
    "keep/f.csv": 66,
    "new.csv": 11,
    "other/h.csv": 8,
    "other/i.csv": 9,
    "other/j.csv": 10,
}
MOVES = {"keep/d2.csv": "keep/d.csv", "other/e.csv": "keep/e.csv"}
REMOVALS = {"keep/b.csv": "deleted", "keep/c.csv": "trashed", "g.csv": "moved out"}


def build(root: Path) -> None:
    """The Drive tree before the changes."""
    for relpath, text in FILES.items():
        path = root / FOLDER / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "elsewhere").mkdir(parents=True, exist_ok=True)


def change(root: Path) -> None:
    """Delete, trash, rename, move, edit, add and move out, as the issue lists them."""
    lake = root / FOLDER
    (lake / "keep/b.csv").unlink()
    (lake / "keep/.drive.json").write_text(json.dumps({"entries": {"c.csv": {"trashed": True}}}))
    os.rename(lake / "keep/d.csv", lake / "keep/d2.csv")
    os.rename(lake / "keep/e.csv", lake / "other/e.csv")
    edited = lake / "keep/f.csv"
    edited.write_text("region,units\nUS,66\n")
    stat = edited.stat()
    os.utime(edited, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    (lake / "new.csv").write_text("region,units\nEU,11\n")
    os.rename(lake / "g.csv", root / "elsewhere/g.csv")


def pipeline(url: str, folder_id: str, **extra: Any) -> Pipeline:
    """CSV → Parquet with raw copies kept, partitioned by region (so keys have directories)."""
    body: dict[str, Any] = {
        "source": {"folder_id": folder_id},
        "output": {"url": url, "keep_raw": True, "partition_by": ["region"]},
        **extra,
    }
    return parse_config({"pipelines": {"lake": body}}).pipelines["lake"]


def output_key(relpath: str, units: int) -> str:
    """Where a file's rows land in the ``lake`` table (partitioned by its one region)."""
    region = "EU" if units % 2 else "US"
    return layout.table_output_key(FOLDER, relpath, ".parquet", partition=[("region", region)])


def data_keys(url: str) -> set[str]:
    """Every output and raw copy in the destination (no bookkeeping)."""
    return {
        o.key
        for o in open_storage(url).list()
        if not o.key.startswith(("_runs/", "_locks/", "_state/", "_schema/"))
    }


def expected_keys() -> set[str]:
    """Each table exactly once at its file's current path, with its raw copy."""
    keys = {output_key(p, u) for p, u in AFTER.items()}
    return keys | {f"_raw/{p}" for p in AFTER}


def check_mirrored(url: str, manifest: RunManifest) -> None:
    """The destination mirrors the changed folder and the manifest names every change."""
    assert data_keys(url) == expected_keys()
    store = open_storage(url)
    for relpath, units in AFTER.items():
        table = pd.read_parquet(io.BytesIO(store.read(output_key(relpath, units))))
        assert table["units"].tolist() == [units], relpath
        assert table["_drive_path"].tolist() == [relpath]  # a moved file's lineage follows it
    by_path = {r.path: r for r in manifest.inputs}
    for new, old in MOVES.items():
        record = by_path[new]
        assert record.status == "moved", record
        assert record.previous_path == old
        assert record.output_keys == [output_key(new, AFTER[new])]
        assert output_key(old, AFTER[new]) in record.deleted_keys
    for path, reason in REMOVALS.items():
        record = by_path[path]
        assert record.status == "removed", record
        assert reason in (record.reason or ""), record
        assert f"_raw/{path}" in record.deleted_keys
        assert any(k.endswith(layout.flat_name(path) + ".parquet") for k in record.deleted_keys)
    assert by_path["keep/f.csv"].status == "written"
    assert by_path["new.csv"].status == "written"
    counts = manifest.counts()
    assert counts["moved"] == 2 and counts["removed"] == 3, counts
    assert counts["written"] == 2 and counts["skipped_unchanged"] == 4, counts
