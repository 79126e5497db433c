"""Writers of one table at once: upload-triggered runs, fanned-out workers, and a writer whose
outputs land while another writer is changing the table.

Schema changes are serialized by the schema lease (``_locks/schema/<pipeline>/``); a writer
that changed nothing checks the schema again after writing and renders again if it moved.
"""

from __future__ import annotations

import io
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO

from devstack.drive_emulator import DriveEmulator
from shared.drive import DriveClient
from shared.run.engine import SyncRequest
from shared.run.fanout.planner import FanoutStarted, start_fanout
from shared.run.fanout.worker import handle_item
from shared.run.manifest import InputRecord
from shared.run.process import process_input
from shared.run.single import ObjectRequest, run_object
from shared.run.tables.store import SchemaDoc, SchemaStore
from shared.storage import Storage, layout, open_storage
from shared.transform.tables.conform import arrow_schema
from tests.fanout.conftest import ListQueue
from tests.tables import duck
from tests.tables.conftest import pipeline, schema_doc, table_files

WRITERS = 6


def drifting_csv(n: int) -> str:
    """Writer ``n``: ids (fractional for writer 0, so ``id`` widens) and a column of its own."""
    ids = [f"{n * 10 + k}.5" if n == 0 else str(n * 10 + k) for k in range(3)]
    return f"region,id,c{n}\n" + "".join(f"EU,{i},{n}\n" for i in ids)


def check_table(url: str) -> None:
    """One schema, every file in it, each writer's change recorded once, DuckDB's sums right."""
    table = schema_doc(url).tables["sales"]
    names = [c.name for c in table.columns]
    assert sorted(names[3:]) == sorted(["id", *(f"c{n}" for n in range(WRITERS))])
    assert {c.name: c.type for c in table.columns}["id"] == "float64"
    versions = [h["version"] for h in table.history]
    assert versions == list(range(1, table.version + 1))  # no change lost, none twice
    made = [
        column
        for entry in table.history
        for change in entry["changes"]
        for column in (change["columns"] if change["op"] == "create" else [change["column"]])
    ]
    for n in range(WRITERS):
        assert made.count(f"c{n}") == 1
    files = table_files(url, "sales")
    assert len(files) == WRITERS
    assert all(schema.equals(arrow_schema(table)) for schema in files.values())
    expected = sum(n * 10 + k + (0.5 if n == 0 else 0) for n in range(WRITERS) for k in range(3))
    [(rows, total, c5)] = duck.query(url, "sales", "SELECT count(*), sum(id), sum(c5) FROM {t}")
    assert (rows, total, c5) == (3 * WRITERS, expected, 3 * 5)


def test_concurrent_upload_runs_change_one_table_without_losing_a_change(
    tmp_path: Path, s3_bucket: str
) -> None:
    source = tmp_path / "incoming"
    source.mkdir()
    for n in range(WRITERS):
        (source / f"part{n}.csv").write_text(drifting_csv(n))
    url = f"s3://{s3_bucket}/lake"
    p = pipeline(url, schema={"columns": {}})
    start = threading.Barrier(WRITERS)

    def upload(n: int) -> str:
        start.wait()
        manifest = run_object(ObjectRequest(p, str(source), f"part{n}.csv"))
        return manifest.inputs[0].status

    with ThreadPoolExecutor(WRITERS) as pool:
        assert list(pool.map(upload, range(WRITERS))) == ["written"] * WRITERS
    check_table(url)


def test_fanned_out_workers_write_one_table_in_parallel(tmp_path: Path, s3_bucket: str) -> None:
    root = tmp_path / "drive"
    for n in range(WRITERS):
        (root / f"d{n}").mkdir(parents=True)
        (root / f"d{n}" / "part.csv").write_text(drifting_csv(n))
    url = f"s3://{s3_bucket}/lake"
    with DriveEmulator(root) as emulator:
        client = DriveClient.from_env({"DRIVE_API_URL": emulator.url, "DRIVE_ACCESS_TOKEN": "t"})
        p = pipeline(
            url,
            source={"folder_id": emulator.root_id},
            fanout={"min_files": 1, "batch_size": 1},
            schema={"columns": {}},
        )
        queue = ListQueue()
        started = start_fanout(SyncRequest(pipeline=p, trigger="test"), queue, drive=client)
        assert isinstance(started, FanoutStarted) and len(queue.items) == WRITERS
        with ThreadPoolExecutor(4) as pool:
            outcomes = list(pool.map(lambda item: handle_item(item, p, drive=client), queue.items))
    assert outcomes == ["done"] * WRITERS
    check_table(url)


class WriteHook:
    """A storage that runs ``hook`` once, just before the first write of a key under
    ``prefix`` (the rest is the real storage)."""

    def __init__(self, inner: Storage, prefix: str, hook: Any) -> None:
        self._inner = inner
        self.base_url = inner.base_url
        self.prefix = prefix
        self.hook = hook
        self.writes: list[str] = []

    def write(self, key: str, data: bytes | BinaryIO, **kwargs: Any) -> Any:
        if key.startswith(self.prefix):
            self.writes.append(key)
            if self.hook is not None:
                hook, self.hook = self.hook, None
                hook()
        return self._inner.write(key, data, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_outputs_written_during_a_change_are_brought_up_to_it_by_their_writer(
    tmp_path: Path,
) -> None:
    """Writer A renders against v1; before its output lands, writer B widens the table to v2
    and rewrites every file it finds (A's is not there yet). A sees v2 when it checks after
    writing, and writes its output again in v2."""
    url = str(tmp_path / "lake")
    p = pipeline(url, schema={"columns": {}})
    dest = open_storage(url)

    def record(path: str) -> InputRecord:
        return InputRecord(source_id=f"id-{path}", path=path)

    def run(store: Storage, path: str, text: str) -> InputRecord:
        entry = record(path)
        process_input(p, store, io.BytesIO(text.encode()), "csv", entry, "run-1")
        return entry

    assert run(dest, "first.csv", "region,id\nEU,1\n").status == "written"  # the table, v1

    def writer_b() -> None:
        assert run(dest, "b.csv", "region,id,extra\nUS,2.5,x\n").status == "written"

    hooked = WriteHook(dest, "sales/region=EU/a.parquet", writer_b)
    a = run(hooked, "a.csv", "region,id\nEU,3\n")  # type: ignore[arg-type]
    assert a.status == "written"
    assert hooked.writes == ["sales/region=EU/a.parquet"] * 2  # written again, in v2
    table = schema_doc(url).tables["sales"]
    assert table.version == 2  # B widened id and added extra: one input, one version
    files = table_files(url, "sales")
    assert len(files) == 3 and all(s.equals(arrow_schema(table)) for s in files.values())
    [(total,)] = duck.query(url, "sales", "SELECT sum(id) FROM {t}")
    assert total == 6.5


def test_a_rewrite_left_by_a_writer_that_died_is_finished_by_the_next_writer(
    tmp_path: Path,
) -> None:
    url = str(tmp_path / "lake")
    p = pipeline(url, schema={"columns": {}})
    dest = open_storage(url)
    first = InputRecord(source_id="id-1", path="first.csv")
    process_input(p, dest, io.BytesIO(b"region,id\nEU,1\n"), "csv", first, "run-1")
    # A writer widened id and died before rewriting the table's files.
    store = SchemaStore(dest, "sales")
    doc = store.read()
    table = doc.tables["sales"]
    wider = replace(
        table,
        columns=tuple(replace(c, type="float64") if c.name == "id" else c for c in table.columns),
        version=2,
    )
    dead = SchemaDoc("sales", {"sales": wider}, doc.serial + 1, ("sales",))
    dest.write(layout.schema_key("sales"), dead.to_json())
    assert not all(s.equals(arrow_schema(wider)) for s in table_files(url, "sales").values())

    second = InputRecord(source_id="id-2", path="second.csv")
    process_input(p, dest, io.BytesIO(b"region,id\nUS,2\n"), "csv", second, "run-2")
    assert second.status == "written"
    after = store.read()
    assert after.rewriting == () and after.tables["sales"].version == 2
    files = table_files(url, "sales")
    assert len(files) == 2 and all(s.equals(arrow_schema(wider)) for s in files.values())
