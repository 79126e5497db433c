"""Fan-out fixtures: a 300-file Drive folder with poisoned files, and the pipeline config.

The folder holds generated valid CSVs, a few malformed JSON files (bad content: quarantined and
reported failed, as in an inline run) and one CSV that makes the worker crash on every delivery
(``tests.fanout.poison``), which must end up dead-lettered and failed in the manifest.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from devstack.drive_emulator.generate import generate_tree
from shared.run.fanout.items import WorkItem

GOOD_FILES = 290
MALFORMED = [f"broken/bad_{n}.json" for n in range(5)]
POISON = "zz_poison/crash.csv"
TOTAL_FILES = GOOD_FILES + len(MALFORMED) + 1 + 4  # + 4 small files under small/
BATCH = 10
MAX_RECEIVE = 3  # the queue's redrive maxReceiveCount / max delivery attempts

CONFIG = """
[settings]
custom_step_modules = ["tests.fanout"]

[pipelines.bulk]
source = {{ folder_id = "${{DRIVE_FOLDER_ID}}" }}
steps = [{{ op = "custom", function = "tests.fanout.poison:crash_on_marker" }}]
output = {{ url = "{scheme}://${{DRIVEPIPE_OUTPUT_BUCKET}}/bulk", format = "parquet" }}
fanout = {{ min_files = 50, batch_size = {batch}, max_attempts = {max_attempts} }}

[pipelines.small]
source = {{ folder_id = "${{DRIVE_FOLDER_ID}}", include = ["small/**"] }}
output = {{ url = "{scheme}://${{DRIVEPIPE_OUTPUT_BUCKET}}/small", format = "parquet" }}
fanout = {{ min_files = 50, batch_size = {batch} }}
"""


def write_config(path: Path, scheme: str, *, max_attempts: int = 5) -> Path:
    """The pipelines file: ``bulk`` fans out (300 files), ``small`` (4 files) stays inline."""
    path.write_text(
        CONFIG.format(scheme=scheme, batch=BATCH, max_attempts=max_attempts), encoding="utf-8"
    )
    return path


def build_drive_folder(root: Path) -> Path:
    """Write the 300-file folder the emulator serves."""
    root.mkdir(parents=True, exist_ok=True)
    generate_tree(root, GOOD_FILES, min_size=200, max_size=800, depth=2, fanout=6, seed=8)
    for relpath in MALFORMED:
        (root / relpath).parent.mkdir(parents=True, exist_ok=True)
        (root / relpath).write_text('{"not": "json', encoding="utf-8")
    (root / POISON).parent.mkdir(parents=True, exist_ok=True)
    (root / POISON).write_text("poison,units\n1,2\n", encoding="utf-8")
    for n in range(4):
        (root / "small" / f"s{n}.csv").parent.mkdir(parents=True, exist_ok=True)
        (root / "small" / f"s{n}.csv").write_text(f"units\n{n}\n", encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def fanout_drive_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder, built once per session (worker)."""
    return build_drive_folder(tmp_path_factory.mktemp("fanout-drive"))


def wait_for(predicate: Callable[[], Any], timeout: float = 120.0, what: str = "") -> Any:
    """Poll until ``predicate()`` is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"not reached within {timeout}s: {what}")
        time.sleep(0.2)


def is_final(body: dict[str, Any]) -> bool:
    """True for a finished manifest (progress reports carry ``status``)."""
    return "inputs" in body and "counts" in body


def by_path(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The manifest's input records keyed by path."""
    return {record["path"]: record for record in manifest["inputs"]}


def dumps(value: Any) -> str:
    """Compact JSON for assertion messages."""
    return json.dumps(value, default=str)[:2000]


class ListQueue:
    """Collects items in process; ``refuse`` makes every send fail (an unreachable queue)."""

    name = "list-queue"

    def __init__(self, refuse: bool = False) -> None:
        self.items: list[WorkItem] = []
        self.refuse = refuse

    def send_batch(self, items: Sequence[WorkItem]) -> list[WorkItem]:
        if self.refuse:
            return list(items)
        self.items.extend(items)
        return []
