"""Progress of a fanned-out run reads only the item results no earlier poll has read.

Runs are laid out directly in a real destination (a local directory; an S3 bucket on
moto_server for the cost test): a plan and item results as the planner and the workers write
them. Every answer is compared, byte for byte as JSON, with the algorithm progress had before
the aggregate (``reference_progress``: read every result on every call). Reads are counted by a
thin in-test wrapper around the real storage.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any, cast

import pytest

from shared.errors import StorageError
from shared.run.fanout.items import ItemResult, item_id
from shared.run.fanout.progress import load_aggregate, progress
from shared.run.fanout.runs import maybe_finalize, run_lease
from shared.run.manifest import STATUSES, InputRecord
from shared.storage import ObjectInfo, Storage, open_storage
from shared.storage.layout import plan_key, progress_key, result_key, run_key

RUN_ID = "20260101T000000Z-0123abcd"
PIPELINE = "p"


def planned_path(item: int, n: int) -> str:
    return f"d{item % 7}/item{item}/f{n}.csv"


def write_plan(dest: Storage, items: int, per_item: int = 2) -> dict[str, Any]:
    """A plan of ``items`` items of ``per_item`` files, plus unchanged and unsupported inputs."""
    inputs = [
        InputRecord(source_id=f"id-{i}-{n}", path=planned_path(i, n))
        for i in range(items)
        for n in range(per_item)
    ]
    inputs.insert(1, InputRecord("id-same", "same.csv", status="skipped_unchanged"))
    inputs.append(InputRecord("id-doc", "notes.docx", status="skipped_unsupported"))
    plan = {
        "version": 1,
        "run_id": RUN_ID,
        "pipeline": PIPELINE,
        "trigger": "test",
        "source": "drive:folder",
        "destination": dest.base_url,
        "definition": "def",
        "started_at": "2026-01-01T00:00:00.000Z",
        "batch_size": per_item,
        "finalize_seconds": 300,
        "queue": "list-queue",
        "item_ids": [item_id(i) for i in range(items)],
        "inputs": [asdict(record) for record in inputs],
        "previous_outputs": {},
    }
    dest.write(plan_key(RUN_ID), json.dumps(plan).encode())
    return plan


def make_result(item: int, per_item: int = 2) -> ItemResult:
    """An item's result; the item number decides what happened to it, for variety.

    Every 9th item failed as a whole (its files failed with the item's error). Otherwise a
    file's fate cycles through written, failed (with or without an error text) and
    skipped_unsupported; item 4 also reports a file the plan does not list (failed) and item 5
    reports item 1's first file again (the later item's record wins).
    """
    records = []
    for n in range(per_item):
        record = InputRecord(source_id=f"id-{item}-{n}", path=planned_path(item, n))
        record.status = ("written", "failed", "skipped_unsupported", "failed")[(item + n) % 4]
        if record.status == "failed" and (item + n) % 8 != 3:
            record.error = f"step 1 (cast): bad value in {record.path}"
        records.append(record)
    if item == 4:
        records.append(InputRecord("id-gone", "gone/extra.csv", status="failed", error="gone"))
    if item == 5:
        records.append(InputRecord("id-1-0", planned_path(1, 0), status="written"))
    if item % 9 == 8:
        for record in records:
            record.status, record.error = "failed", "dead-lettered after 3 deliveries"
        return ItemResult(RUN_ID, item_id(item), "failed", records, {}, 3, "dead-lettered")
    return ItemResult(RUN_ID, item_id(item), "done", records, {})


def add_results(dest: Storage, items: range | list[int], per_item: int = 2) -> None:
    for item in items:
        result = make_result(item, per_item)
        assert dest.create_if_absent(result_key(RUN_ID, item_id(item)), result.to_json())


def reference_progress(dest: Storage, run_id: str) -> dict[str, Any] | None:
    """What progress answered before the aggregate: every result read on every call."""
    try:
        plan = json.loads(dest.read(plan_key(run_id)))
    except StorageError:
        return None
    prefix = f"_runs/{run_id}/items/"
    keys = sorted(o.key for o in dest.list(prefix) if o.key.endswith(".json"))
    results = [ItemResult.from_json(dest.read(key)) for key in keys]
    planned = len(plan["item_ids"])
    failed_items = sum(1 for r in results if r.status == "failed")
    done = {(r.source_id, r.path): r for result in results for r in result.records}
    files = dict.fromkeys(STATUSES, 0)
    for raw in plan["inputs"]:
        record = InputRecord(**raw)
        files[done.get((record.source_id, record.path), record).status] += 1
    return {
        "run_id": run_id,
        "pipeline": plan["pipeline"],
        "status": "finalizing" if len(results) >= planned else "running",
        "started_at": plan["started_at"],
        "items": {
            "total": planned,
            "done": len(results) - failed_items,
            "failed": failed_items,
            "pending": planned - len(results),
        },
        "files": files,
        "failed": [
            {"path": r.path, "error": r.error}
            for result in results
            for r in result.records
            if r.status == "failed"
        ],
    }


def assert_same_as_reference(dest: Storage) -> dict[str, Any]:
    answer = progress(dest, RUN_ID)
    expected = reference_progress(dest, RUN_ID)
    assert json.dumps(answer) == json.dumps(expected)
    assert answer is not None
    return answer


class CountingStorage:
    """The real storage, with every ``read`` and ``write`` key noted; ``refuse_writes`` makes
    writes fail as an unreachable or read-only bucket would."""

    def __init__(self, inner: Storage, *, refuse_writes: bool = False) -> None:
        self.inner = inner
        self.base_url = inner.base_url
        self.reads: list[str] = []
        self.writes: list[str] = []
        self.refuse_writes = refuse_writes

    def read(self, key: str) -> bytes:
        self.reads.append(key)
        return self.inner.read(key)

    def write(self, key: str, data: bytes, *, content_type: str | None = None) -> ObjectInfo:
        self.writes.append(key)
        if self.refuse_writes:
            raise StorageError(f"cannot write {key}: access denied")
        return self.inner.write(key, data, content_type=content_type)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self.inner.list(prefix)

    def reset(self) -> None:
        self.reads.clear()
        self.writes.clear()


@pytest.fixture
def dest(tmp_path: Path) -> Storage:
    return open_storage(str(tmp_path / "out"))


@pytest.fixture
def fanout_warnings() -> Iterator[list[str]]:
    """Messages the fan-out logger warns with (``drivepipe`` may not propagate to pytest)."""
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    logger = logging.getLogger("drivepipe.fanout")
    handler, level = Collect(logging.WARNING), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)  # whatever level other tests configured the parent with
    yield messages
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_no_plan_means_not_fanned_out(dest: Storage) -> None:
    assert progress(dest, RUN_ID) is None
    assert not dest.exists(progress_key(RUN_ID))


def test_answers_match_reading_every_result_fresh_partial_and_complete(dest: Storage) -> None:
    write_plan(dest, 20)
    first = assert_same_as_reference(dest)  # no result yet
    assert first["status"] == "running" and first["items"]["pending"] == 20
    assert not dest.exists(progress_key(RUN_ID))  # nothing read, nothing to save

    add_results(dest, range(1, 20, 2))  # odd items: a fresh aggregate
    assert_same_as_reference(dest)
    assert sorted(load_aggregate(dest, RUN_ID, 42)) == [item_id(i) for i in range(1, 20, 2)]

    add_results(dest, [0, 4, 8, 16])  # a partial aggregate; new items sort between known ones
    answer = assert_same_as_reference(dest)
    assert answer["items"] == {"total": 20, "done": 12, "failed": 2, "pending": 6}
    assert {"path": "gone/extra.csv", "error": "gone"} in answer["failed"]

    add_results(dest, [2, 6, 10, 12, 14, 18])
    answer = assert_same_as_reference(dest)
    assert answer["status"] == "finalizing" and answer["items"]["pending"] == 0
    assert answer["files"]["skipped_unchanged"] == 1
    assert answer == assert_same_as_reference(dest)  # from the aggregate alone

    dest.delete(progress_key(RUN_ID))
    assert assert_same_as_reference(dest) == answer  # rebuilt from the results


CORRUPT = {
    "not json": b"\xff\x00{garbage",
    "truncated": b'{"version":1,"run_id":"' + RUN_ID.encode() + b'","inputs":12,"items":{"i0',
    "not an object": b"[1, 2, 3]",
    "another version": json.dumps({"version": 99, "run_id": RUN_ID, "items": {}}).encode(),
    "another run": json.dumps(
        {"version": 1, "run_id": "20250101T000000Z-00000000", "inputs": 12, "items": {}}
    ).encode(),
    "another plan": json.dumps({"version": 1, "run_id": RUN_ID, "inputs": 3, "items": {}}).encode(),
    "index past the plan": json.dumps(
        {
            "version": 1,
            "run_id": RUN_ID,
            "inputs": 12,
            "items": {"i00000": ["done", [[12, "written"]]]},
        }
    ).encode(),
    "unknown status": json.dumps(
        {"version": 1, "run_id": RUN_ID, "inputs": 12, "items": {"i00000": ["done", [[0, "ok"]]]}}
    ).encode(),
    "failed without error": json.dumps(
        {
            "version": 1,
            "run_id": RUN_ID,
            "inputs": 12,
            "items": {"i00000": ["done", [[0, "failed"]]]},
        }
    ).encode(),
    "item not a pair": json.dumps(
        {"version": 1, "run_id": RUN_ID, "inputs": 12, "items": {"i00000": 7}}
    ).encode(),
}


@pytest.mark.parametrize("corruption", sorted(CORRUPT))
def test_an_unusable_aggregate_is_rebuilt_from_the_results(
    dest: Storage, corruption: str, fanout_warnings: list[str]
) -> None:
    write_plan(dest, 5)  # 5 items of 2 files + 2 other inputs: 12 inputs
    add_results(dest, range(5))
    expected = reference_progress(dest, RUN_ID)
    dest.write(progress_key(RUN_ID), CORRUPT[corruption])

    assert json.dumps(progress(dest, RUN_ID)) == json.dumps(expected)
    assert fanout_warnings == ["ignored the progress aggregate"]
    assert sorted(load_aggregate(dest, RUN_ID, 12)) == [item_id(i) for i in range(5)]


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "s3":
        return open_storage(f"s3://{request.getfixturevalue('s3_bucket')}/out")
    return open_storage(str(tmp_path / "out"))


def test_a_second_poll_reads_no_result_and_a_later_one_only_the_new_ones(
    backend: Storage,
) -> None:
    write_plan(backend, 205, per_item=1)
    add_results(backend, range(200), per_item=1)
    counting = CountingStorage(backend)
    dest = cast(Storage, counting)
    results = {result_key(RUN_ID, item_id(i)) for i in range(205)}

    first = progress(dest, RUN_ID)
    assert json.dumps(first) == json.dumps(reference_progress(backend, RUN_ID))
    assert first is not None and first["items"]["pending"] == 5
    polled = [key for key in counting.reads if key in results]
    assert len(polled) == 200 and counting.writes == [progress_key(RUN_ID)]

    counting.reset()
    assert json.dumps(progress(dest, RUN_ID)) == json.dumps(first)
    assert counting.reads == [plan_key(RUN_ID), progress_key(RUN_ID)]  # and no result
    assert counting.writes == []  # nothing new: the aggregate is not written again

    add_results(backend, range(200, 205), per_item=1)
    counting.reset()
    answer = progress(dest, RUN_ID)
    assert counting.reads[:2] == [plan_key(RUN_ID), progress_key(RUN_ID)]
    assert sorted(counting.reads[2:]) == [result_key(RUN_ID, item_id(i)) for i in range(200, 205)]
    assert counting.writes == [progress_key(RUN_ID)]
    assert answer == reference_progress(backend, RUN_ID)
    assert answer is not None and answer["status"] == "finalizing"


def test_a_failure_to_save_the_aggregate_does_not_fail_the_poll(
    dest: Storage, fanout_warnings: list[str]
) -> None:
    write_plan(dest, 6)
    add_results(dest, range(4))
    refusing = CountingStorage(dest, refuse_writes=True)

    answer = progress(cast(Storage, refusing), RUN_ID)
    assert json.dumps(answer) == json.dumps(reference_progress(dest, RUN_ID))
    assert refusing.writes == [progress_key(RUN_ID)]
    assert fanout_warnings == ["cannot save the progress aggregate"]
    assert not dest.exists(progress_key(RUN_ID))


def test_the_finalizer_reads_the_results_not_the_aggregate(dest: Storage) -> None:
    plan = write_plan(dest, 3)
    add_results(dest, range(3))
    run_lease(dest, PIPELINE, RUN_ID, ttl=3600).acquire()  # as the planner holds it
    # An aggregate that lies (every record failed): progress trusts it, the finalizer must not.
    lie = {
        item_id(i): ["failed", [[n, "failed", "lie"] for n in range(len(plan["inputs"]))]]
        for i in range(3)
    }
    body = {"version": 1, "run_id": RUN_ID, "inputs": len(plan["inputs"]), "items": lie}
    dest.write(progress_key(RUN_ID), json.dumps(body).encode())
    running = progress(dest, RUN_ID)
    assert running is not None and running["files"]["failed"] == len(plan["inputs"])

    manifest = maybe_finalize(dest, RUN_ID)
    assert manifest is not None
    stored = json.loads(dest.read(run_key(RUN_ID)))
    assert stored["counts"] == manifest.counts()
    expected = reference_progress(dest, RUN_ID)
    assert expected is not None
    assert {k: v for k, v in expected["files"].items() if k != "planned"} == stored["counts"]
    assert stored["counts"]["written"] > 0 and "lie" not in json.dumps(stored)
