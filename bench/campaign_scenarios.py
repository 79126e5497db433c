"""The reliability campaign's scenarios: faults, duplicates, overlap and load.

Each builds its inputs, runs them against real servers on 127.0.0.1 (the Drive emulator,
moto_server, the GCS emulator, the fault proxy), then reads every output back
(:func:`bench.campaign_core.settle`). The hostile-input scenarios are in
:mod:`bench.campaign_hostile`, the kills in :mod:`bench.campaign_kill`; :data:`SCENARIOS`
lists them all.
"""

from __future__ import annotations

import io
import os
import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.campaign_core import (
    WAIT_LIMIT,
    Outcome,
    Sizes,
    destination,
    drive_folder,
    fill,
    pipeline_for,
    settle,
    shared_moto,
)
from devstack.drive_emulator import FaultConfig
from devstack.faultproxy import FaultProxy
from shared.config import load_config_from_env
from shared.drive import DriveClient
from shared.drive.retry import RetryPolicy
from shared.errors import DrivepipeError, LeaseHeld, StorageError, is_transient
from shared.run.manifest import InputRecord
from shared.run.sync import SyncRequest, run_sync
from shared.storage import Storage, open_storage
from tests.reliability.helpers import state_entries, toml_dumps
from tests.reliability.lake import Row

Scenario = Callable[[Sizes, Path, str], Outcome]


# ---- faults ---------------------------------------------------------------------------------
def drive_faults(sizes: Sizes, work: Path, backend: str) -> Outcome:
    """35% of Drive requests fail (403/429/503, resets, truncated and corrupt bodies); the
    first run gives up on some downloads (3 attempts), the re-run finishes them."""
    faults = FaultConfig(rate=0.35, seed=11, latency_spike_s=0.05, latency_spike_rate=0.1)
    dest = destination(backend, work, "faults")
    with drive_folder(faults) as (root, emulator):
        expected = fill(root, sizes.files)
        pipeline = pipeline_for(dest.url, emulator.root_id, concurrency=4)
        retry = RetryPolicy(max_attempts=3, base_delay=0.005, max_delay=0.05)
        first = run_sync(
            SyncRequest(pipeline=pipeline, checkpoint_every=5),
            drive=DriveClient.from_env(retry=retry),
        )
        left = sum(1 for r in first.inputs if r.status != "written")
        injected = sum(emulator.stats.snapshot()["faults"].values())
        emulator.set_faults(FaultConfig())
        second = run_sync(SyncRequest(pipeline=pipeline))
    outcome = settle(dest.storage, expected, leftovers=dest.leftovers())
    redone = second.counts()["written"]
    outcome.check(left > 0, "the faulty run finished everything: the re-run path went untested")
    outcome.check(redone == left, f"the re-run wrote {redone} inputs, {left} were left")
    outcome.note = f"{injected} faults; {left} left by the first run, finished by the re-run"
    return outcome


def s3_outage(sizes: Sizes, work: Path, backend: str) -> Outcome:
    """S3 resets every connection after a third of the inputs; the re-run finishes."""
    moto = shared_moto()
    with FaultProxy("127.0.0.1", moto.port) as proxy:
        dest = destination("s3", work, "outage")
        os.environ.update({"AWS_ENDPOINT_URL": proxy.url, "AWS_MAX_ATTEMPTS": "2"})
        os.environ["DRIVEPIPE_LEASE_SECONDS"] = "3"
        storage = open_storage(dest.url)  # through the proxy
        with drive_folder() as (root, emulator):
            expected = fill(root, sizes.files)
            pipeline = pipeline_for(dest.url, emulator.root_id, concurrency=2)

            def outage(record: InputRecord, done: int, total: int) -> None:
                if done == sizes.files // 3:
                    proxy.set_mode("reset")

            with suppress(StorageError):  # the outage ends this run; the re-run finishes
                run_sync(SyncRequest(pipeline=pipeline, checkpoint_every=1), progress=outage)
            proxy.set_mode("pass")
            done = len(state_entries(storage, "rel"))
            rerun = run_sync(SyncRequest(pipeline=pipeline, lock_wait_seconds=10))
        outcome = settle(storage, expected, leftovers=dest.leftovers())
    outcome.check(0 < done < sizes.files, f"{done} checkpointed before the outage")
    outcome.check(
        rerun.counts()["written"] == sizes.files - done,
        f"the re-run wrote {rerun.counts()['written']}, expected {sizes.files - done}",
    )
    outcome.note = f"{proxy.resets} connections reset; {done} checkpointed before"
    return outcome


# ---- duplicates, overlap, load through the event path ----------------------------------------
def _deploy_upload(work: Path, bucket: str) -> None:
    spec = {
        "source": {"incoming_url": f"s3://{bucket}/incoming/"},
        "output": {"url": f"s3://{bucket}/out", "format": "csv"},
    }
    path = work / "events.toml"
    path.write_text(toml_dumps({"pipelines": {"rel": spec}}))
    os.environ["DRIVEPIPE_CONFIG"] = str(path)
    load_config_from_env.cache_clear()


def _events(bucket: str, count: int) -> tuple[list[dict[str, Any]], dict[str, list[Row]]]:
    """``count`` uploads, each a CSV whose one row names it; their records and rows."""
    from devstack.aws_events import s3_put_record

    records, expected = [], {}
    s3 = shared_moto().client()
    for n in range(count):
        key, body = f"incoming/e{n:04d}.csv", f"a,b\ne{n:04d},1\n".encode()
        etag = s3.put_object(Bucket=bucket, Key=key, Body=body)["ETag"]
        records.append(s3_put_record(bucket, key, size=len(body), etag=etag))
        expected[f"e{n:04d}"] = [(f"e{n:04d}", "1")]
    return records, expected


def _deliver(
    records: list[dict[str, Any]], copies: Callable[[], int], workers: int
) -> tuple[int, int, int]:
    """Deliver each record ``copies()`` times, shuffled; (deliveries, events transformed more
    than once, events never accepted)."""
    from devstack.aws_events import s3_event
    from shared.triggers import service
    from shared.triggers.events import from_s3_event

    deliveries = [r for r in records for _ in range(copies())]
    random.Random(4).shuffle(deliveries)
    outcomes: dict[str, Counter[str]] = defaultdict(Counter)
    deadline = time.monotonic() + WAIT_LIMIT

    def one(record: dict[str, Any]) -> tuple[str, str]:
        event = from_s3_event(s3_event([record]))[0]
        while time.monotonic() < deadline:  # like the cloud: retryable means "again later"
            try:
                return event.dedupe_id, service.on_object(event, trigger="campaign")["outcome"]
            except DrivepipeError as exc:  # storage failures and claims held elsewhere
                if not is_transient(exc):
                    raise
                time.sleep(0.2)
        return event.dedupe_id, "never accepted"

    with ThreadPoolExecutor(workers) as pool:
        for dedupe_id, outcome in pool.map(one, deliveries):
            outcomes[dedupe_id][outcome] += 1
    twice = sum(1 for c in outcomes.values() if c["transformed"] > 1)
    never = sum(1 for c in outcomes.values() if c["never accepted"])
    return len(deliveries), twice, never


def duplicate_events(sizes: Sizes, work: Path, backend: str) -> Outcome:
    """Each upload event delivered 1-5 times, shuffled, 8 at a time."""
    rng = random.Random(9)
    dest = destination("s3", work, "dupes")
    bucket = dest.url.split("/")[2]
    _deploy_upload(work, bucket)
    records, expected = _events(bucket, sizes.events)
    deliveries, twice, never = _deliver(records, lambda: rng.randint(1, 5), 8)
    outcome = settle(open_storage(f"s3://{bucket}/out"), expected, leftovers=dest.leftovers())
    outcome.check(twice == 0, f"{twice} events transformed more than once")
    outcome.check(never == 0, f"{never} events never accepted")
    outcome.note = f"{deliveries} deliveries; each event transformed once"
    return outcome


def event_burst(sizes: Sizes, work: Path, backend: str) -> Outcome:
    """Many upload events at once, 16 concurrent deliveries, through service.on_object."""
    dest = destination("s3", work, "burst")
    bucket = dest.url.split("/")[2]
    _deploy_upload(work, bucket)
    records, expected = _events(bucket, sizes.burst_events)
    deliveries, twice, never = _deliver(records, lambda: 1, 16)
    outcome = settle(open_storage(f"s3://{bucket}/out"), expected, leftovers=dest.leftovers())
    outcome.check(twice == 0 and never == 0, f"{twice} twice, {never} never accepted")
    outcome.note = f"{deliveries} deliveries"
    return outcome


def overlapping_syncs(sizes: Sizes, work: Path, backend: str) -> Outcome:
    """A second sync while the first runs: refused with the holder; nothing corrupted."""
    dest = destination(backend, work, "overlap")
    with drive_folder(FaultConfig(latency_s=0.05)) as (root, emulator):
        expected = fill(root, sizes.files)
        pipeline = pipeline_for(dest.url, emulator.root_id, concurrency=2)
        runner = threading.Thread(target=run_sync, args=(SyncRequest(pipeline=pipeline),))
        runner.start()
        deadline = time.monotonic() + WAIT_LIMIT
        while not list(dest.storage.list("_locks/")) and time.monotonic() < deadline:
            time.sleep(0.01)
        try:
            run_sync(SyncRequest(pipeline=pipeline))
            refused = "second sync was NOT refused"
        except LeaseHeld as exc:
            refused = f"second refused: {exc}"[:60]
        runner.join(WAIT_LIMIT)
        emulator.set_faults(FaultConfig())
        rerun = run_sync(SyncRequest(pipeline=pipeline, lock_wait_seconds=30))
    outcome = settle(dest.storage, expected, leftovers=dest.leftovers())
    outcome.check(not runner.is_alive(), "the first sync did not end in time")
    outcome.check("NOT" not in refused, refused)
    outcome.check(rerun.counts()["written"] == 0, "the re-run wrote what the first had done")
    outcome.note = refused
    return outcome


# ---- load -----------------------------------------------------------------------------------
GCS_EMULATOR_FILES = 2_000  # see many_files


def many_files(sizes: Sizes, work: Path, backend: str) -> Outcome:
    """A folder of many small files in one sync.

    On the GCS emulator the full size is cut to 2,000 files: gcp-storage-emulator rewrites one
    JSON document of every object's metadata on each write, so n files cost O(n²) (10,000
    took over an hour and a half); real GCS has no such cost.
    """
    count = sizes.many_files
    if backend == "gcs":
        count = min(count, GCS_EMULATOR_FILES)
    dest = destination(backend, work, "many")
    with drive_folder() as (root, emulator):
        expected = fill(root, count, rows=5)
        pipeline = pipeline_for(dest.url, emulator.root_id, concurrency=16)
        started = time.monotonic()
        manifest = run_sync(SyncRequest(pipeline=pipeline))
        seconds = time.monotonic() - started
    outcome = settle(dest.storage, expected, leftovers=dest.leftovers())
    outcome.note = f"{count / seconds:.1f} files/s; {manifest.counts()['failed']} failed"
    if count < sizes.many_files:
        outcome.note += f" ({count:,} on the GCS emulator, whose writes cost O(n))"
    return outcome


@dataclass
class _BigCsv:
    rows: int = 0
    sum_a: int = 0
    sum_ab: float = 0.0


def big_csv(sizes: Sizes, work: Path, backend: str) -> Outcome:
    """One big CSV, streamed; the output read back in batches: its rows and column sums."""
    dest = destination(backend, work, "big")
    with drive_folder() as (root, emulator):
        source = _write_big_csv(root / "big.csv", sizes.big_csv_mb * 1_000_000)
        extra: dict[str, Any] = {"steps": [{"op": "derive", "column": "c", "expr": "a * b"}]}
        extra["streaming"] = {"threshold_mb": min(256, max(8, sizes.big_csv_mb // 4))}
        pipeline = pipeline_for(dest.url, emulator.root_id, **extra)
        started = time.monotonic()
        manifest = run_sync(SyncRequest(pipeline=pipeline))
        seconds = time.monotonic() - started
    record = manifest.inputs[0]
    back = _read_back_parquet(dest.storage, record.output_keys)
    ok = (back.rows, back.sum_a) == (source.rows, source.sum_a) and abs(
        back.sum_ab - source.sum_ab
    ) <= 1e-6 * max(1.0, abs(source.sum_ab))
    outcome = Outcome(1, 1 if ok else 0, lost=0 if ok else 1, leftovers=dest.leftovers())
    outcome.check(record.status == "written", f"{record.status}: {record.error}")
    outcome.check(len(record.output_keys) == 1, f"outputs {record.output_keys}")
    outcome.note = (
        f"{sizes.big_csv_mb / seconds:.0f} MB/s, {source.rows} rows, streamed; read back: "
        f"{back.rows} rows, sums {'equal' if ok else 'DIFFER'}"
    )
    return outcome


def _write_big_csv(path: Path, size: int) -> _BigCsv:
    rng = random.Random(1)
    pool = [(rng.randint(0, 10**6), round(rng.random(), 6), n % 977) for n in range(4096)]
    lines = "".join(f"{a},{b:.6f},name{n}\n" for a, b, n in pool)
    block = _BigCsv(len(pool), sum(a for a, _, _ in pool), sum(a * b for a, b, _ in pool))
    total, written = _BigCsv(), 0
    with path.open("w") as out:
        out.write("a,b,name\n")
        while written < size:
            out.write(lines)
            written += len(lines)
            total.rows += block.rows
            total.sum_a += block.sum_a
            total.sum_ab += block.sum_ab
    return total


def _read_back_parquet(storage: Storage, keys: list[str]) -> _BigCsv:
    """Rows and sums of the outputs, one record batch at a time (bounded memory)."""
    import tempfile

    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    total = _BigCsv()
    for key in keys:
        with tempfile.TemporaryFile() as local:
            with storage.open_read(key) as stream:
                while chunk := stream.read(8 * 1024 * 1024):
                    local.write(chunk)
            local.seek(0)
            for batch in pq.ParquetFile(io.BufferedReader(local)).iter_batches(columns=["a", "c"]):
                total.rows += batch.num_rows
                total.sum_a += int(pc.sum(batch.column(0)).as_py() or 0)
                total.sum_ab += float(pc.sum(batch.column(1)).as_py() or 0.0)
    return total


def _scenarios() -> dict[str, tuple[Scenario, tuple[str, ...] | None]]:
    """Every scenario: its function and the backends it runs on (``None``: the chosen one)."""
    from bench.campaign_hostile import (
        bad_input,
        collisions,
        export_corruption,
        hostile_corpus,
        override_attack,
        renames,
    )
    from bench.campaign_kill import kill_points

    return {
        "drive faults (35% of requests)": (drive_faults, None),
        "S3 outage mid-sync + re-run": (s3_outage, ("s3",)),
        "kill -9 at crash points + re-run": (kill_points, None),
        "events delivered 1-5x, shuffled": (duplicate_events, ("s3",)),
        "overlapping syncs": (overlapping_syncs, None),
        "bad-input corpus, one sync": (bad_input, None),
        "hostile corpus, one sync": (hostile_corpus, None),
        "colliding names": (collisions, None),
        "renames, moves, removals": (renames, None),
        "folder_id override attack": (override_attack, None),
        "corrupted Sheets exports": (export_corruption, None),
        "many small files": (many_files, None),
        "upload event burst": (event_burst, ("s3",)),
        "one big CSV": (big_csv, None),
    }


SCENARIOS: dict[str, tuple[Scenario, tuple[str, ...] | None]] = _scenarios()
