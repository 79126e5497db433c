"""The reliability campaign's scenarios: each builds its inputs, runs them, and counts outcomes.

Every scenario returns a :class:`Outcome`: how many inputs it had, how many ended written, how
many failed *as expected* (the bad-input corpus), how many were lost (neither, or claimed by the
state without their output) and how many were processed twice (duplicates). Real servers on
127.0.0.1 only: the Drive emulator, moto_server, and the fault proxy in front of it.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack.drive_emulator import DriveEmulator, FaultConfig, path_id
from devstack.faultproxy import FaultProxy
from devstack.servers import MotoServer
from shared.config import Pipeline, load_config_from_env, parse_config
from shared.drive import DriveClient
from shared.drive.retry import RetryPolicy
from shared.errors import DrivepipeError, LeaseHeld, StorageError, is_transient
from shared.run.manifest import InputRecord
from shared.run.sync import SyncRequest, run_sync
from shared.storage import Storage, open_storage
from tests.reliability.cases import CASES, build_corpus, corpus_pipeline_body
from tests.reliability.helpers import data_keys, missing_outputs, state_entries, toml_dumps

REPO = Path(__file__).resolve().parents[1]
MOTO_PORT_ENV = "CAMPAIGN_MOTO_PORT"  # the runner's shared moto_server, if it started one
FAST_RETRY = RetryPolicy(max_attempts=4, base_delay=0.005, max_delay=0.05)


@dataclass
class Outcome:
    """One scenario's counts; ``lost`` and ``duplicates`` must be 0."""

    inputs: int
    written: int
    failed_expected: int = 0
    lost: int = 0
    duplicates: int = 0
    note: str = ""


@dataclass(frozen=True)
class Sizes:
    """How big each scenario runs: short (CI) or full (on demand)."""

    files: int
    many_files: int
    events: int
    burst_events: int
    big_csv_mb: int

    @classmethod
    def pick(cls, full: bool) -> Sizes:
        if full:
            return cls(files=200, many_files=10_000, events=100, burst_events=200, big_csv_mb=1000)
        return cls(files=24, many_files=200, events=16, burst_events=30, big_csv_mb=12)


# ---- shared set-up --------------------------------------------------------------------------
def fill(root: Path, count: int, rows: int = 20, per_folder: int = 100) -> None:
    """``count`` small CSVs in folders of ``per_folder``; each row names its file."""
    for n in range(count):
        folder = root / f"d{n // per_folder:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        body = "".join(f"{n},{i}\n" for i in range(rows))
        (folder / f"f{n:05d}.csv").write_text("file,row\n" + body)


@contextmanager
def moto_server() -> Iterator[MotoServer]:
    """The runner's moto_server (``CAMPAIGN_MOTO_PORT``), else one started for this scenario."""
    port = os.environ.get(MOTO_PORT_ENV)
    if port:
        yield MotoServer(port=int(port))  # already running; not ours to stop
        return
    with MotoServer() as server:
        yield server


def new_bucket(moto: MotoServer, purpose: str) -> str:
    """A fresh bucket (the shared server outlives scenarios, so names must not repeat)."""
    os.environ.update(moto.env())
    return moto.create_bucket(f"campaign-{purpose}-{uuid.uuid4().hex[:10]}")


@contextmanager
def drive_folder(faults: FaultConfig | None = None) -> Iterator[tuple[Path, DriveEmulator]]:
    """A temporary folder served by a Drive emulator, with the env pointing at it."""
    with tempfile.TemporaryDirectory(prefix="campaign-") as tmp:
        root = Path(tmp) / "drive"
        root.mkdir()
        with DriveEmulator(root, faults=faults) as emulator:
            os.environ["DRIVE_API_URL"] = emulator.url
            os.environ["DRIVE_ACCESS_TOKEN"] = "campaign-token"
            yield root, emulator


def pipeline_for(dest_url: str, folder_id: str, **body: Any) -> Pipeline:
    spec = {"source": {"folder_id": folder_id}, "output": {"url": dest_url}, **body}
    return parse_config({"pipelines": {"rel": spec}}).pipelines["rel"]


def settle(dest: Storage, inputs: int, redone: int = 0, expected_failed: int = 0) -> Outcome:
    """Count the end state: outputs present, state claims honoured."""
    written = len(data_keys(dest))
    lost = inputs - written - expected_failed + len(missing_outputs(dest, "rel"))
    return Outcome(inputs, written, expected_failed, max(lost, 0), redone)


def redone(first_done: set[str], rerun: Any) -> int:
    """Inputs a re-run wrote again although they were already finished (duplicate work)."""
    return sum(1 for r in rerun.inputs if r.status == "written" and r.path in first_done)


# ---- faults ---------------------------------------------------------------------------------
def drive_faults(sizes: Sizes, work: Path) -> Outcome:
    """35% of Drive requests fail (403/429/503, resets, truncated and corrupt bodies)."""
    faults = FaultConfig(rate=0.35, seed=11, latency_spike_s=0.05, latency_spike_rate=0.1)
    with drive_folder(faults) as (root, emulator):
        fill(root, sizes.files)
        dest = open_storage(str(work / "dest"))
        pipeline = pipeline_for(dest.base_url, emulator.root_id, concurrency=4)
        client = DriveClient.from_env(retry=FAST_RETRY)
        first = run_sync(SyncRequest(pipeline=pipeline, checkpoint_every=5), drive=client)
        done = {r.path for r in first.inputs if r.status == "written"}
        injected = sum(emulator.stats.snapshot()["faults"].values())
        emulator.set_faults(FaultConfig())
        second = run_sync(SyncRequest(pipeline=pipeline), drive=DriveClient.from_env())
    outcome = settle(dest, sizes.files, redone(done, second))
    outcome.note = f"{injected} faults; {sizes.files - len(done)} finished by the re-run"
    return outcome


def s3_outage(sizes: Sizes, work: Path) -> Outcome:
    """S3 resets every connection after a third of the inputs; the re-run finishes."""
    with moto_server() as moto, FaultProxy("127.0.0.1", moto.port) as proxy:
        bucket = new_bucket(moto, "outage")
        os.environ.update({"AWS_ENDPOINT_URL": proxy.url, "AWS_MAX_ATTEMPTS": "2"})
        os.environ["DRIVEPIPE_LEASE_SECONDS"] = "3"
        with drive_folder() as (root, emulator):
            fill(root, sizes.files)
            dest = open_storage(f"s3://{bucket}/dest")
            pipeline = pipeline_for(dest.base_url, emulator.root_id, concurrency=2)

            def outage(record: InputRecord, done: int, total: int) -> None:
                if done == sizes.files // 3:
                    proxy.set_mode("reset")

            with suppress(StorageError):  # the outage ends this run; the re-run finishes
                run_sync(SyncRequest(pipeline=pipeline, checkpoint_every=1), progress=outage)
            proxy.set_mode("pass")
            done = {e["path"] for e in state_entries(dest, "rel").values()}
            rerun = run_sync(SyncRequest(pipeline=pipeline, lock_wait_seconds=10))
            outcome = settle(dest, sizes.files, redone(done, rerun))
    outcome.note = f"{proxy.resets} connections reset; {len(done)} checkpointed before"
    return outcome


def crash(sizes: Sizes, work: Path) -> Outcome:
    """``drivepipe sync`` SIGKILLed mid-run, then run again."""
    with drive_folder(FaultConfig(latency_s=0.03)) as (root, emulator):
        fill(root, sizes.files)
        dest = open_storage(str(work / "dest"))
        config = work / "drivepipe.toml"
        body = {"source": {"folder_id": emulator.root_id}, "output": {"url": dest.base_url}}
        config.write_text(toml_dumps({"pipelines": {"rel": {**body, "concurrency": 1}}}))
        env = {**os.environ, "DRIVEPIPE_CHECKPOINT_EVERY": "1", "DRIVEPIPE_LEASE_SECONDS": "2"}
        command = [sys.executable, "-m", "shared.cli", "sync", "--config", str(config), "--json"]
        proc = subprocess.Popen(
            command, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            deadline = time.monotonic() + 120
            while len(state_entries(dest, "rel")) < sizes.files // 4:
                if proc.poll() is not None or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait(timeout=10)
        done = {e["path"] for e in state_entries(dest, "rel").values()}
        emulator.set_faults(FaultConfig())
        pipeline = pipeline_for(dest.base_url, emulator.root_id)
        rerun = run_sync(SyncRequest(pipeline=pipeline, lock_wait_seconds=15))
    outcome = settle(dest, sizes.files, redone(done, rerun))
    outcome.note = f"killed after {len(done)} checkpointed inputs (exit {proc.returncode})"
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


def _events(moto: MotoServer, bucket: str, count: int) -> list[dict[str, Any]]:
    from devstack.aws_events import s3_put_record

    records = []
    s3 = moto.client()
    for n in range(count):
        key, body = f"incoming/e{n:04d}.csv", f"a,b\n{n},1\n".encode()
        etag = s3.put_object(Bucket=bucket, Key=key, Body=body)["ETag"]
        records.append(s3_put_record(bucket, key, size=len(body), etag=etag))
    return records


def _deliver(records: list[dict[str, Any]], copies: Callable[[], int], workers: int) -> Outcome:
    from devstack.aws_events import s3_event
    from shared.triggers import service
    from shared.triggers.events import from_s3_event

    deliveries = [r for r in records for _ in range(copies())]
    random.Random(4).shuffle(deliveries)
    outcomes: dict[str, Counter[str]] = defaultdict(Counter)

    def one(record: dict[str, Any]) -> tuple[str, str]:
        event = from_s3_event(s3_event([record]))[0]
        for _ in range(50):  # like the cloud: a retryable error means "deliver again later"
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
    transformed = sum(c["transformed"] for c in outcomes.values())
    ids = [from_s3_event(s3_event([r]))[0].dedupe_id for r in records]
    lost = sum(1 for i in ids if outcomes[i]["transformed"] == 0)
    twice = sum(max(0, outcomes[i]["transformed"] - 1) for i in ids)
    return Outcome(len(records), transformed, 0, lost, twice, f"{len(deliveries)} deliveries")


def duplicate_events(sizes: Sizes, work: Path) -> Outcome:
    """Each upload event delivered 1-5 times, shuffled, 8 at a time."""
    rng = random.Random(9)
    with moto_server() as moto:
        bucket = new_bucket(moto, "dupes")
        _deploy_upload(work, bucket)
        outcome = _deliver(_events(moto, bucket, sizes.events), lambda: rng.randint(1, 5), 8)
        outputs = len(data_keys(open_storage(f"s3://{bucket}/out")))
    outcome.written = outputs
    return outcome


def event_burst(sizes: Sizes, work: Path) -> Outcome:
    """Many upload events at once, 16 concurrent deliveries, through service.on_object."""
    with moto_server() as moto:
        bucket = new_bucket(moto, "burst")
        _deploy_upload(work, bucket)
        records = _events(moto, bucket, sizes.burst_events)
        outcome = _deliver(records, lambda: 1, 16)
        outputs = len(data_keys(open_storage(f"s3://{bucket}/out")))
    outcome.written = outputs
    outcome.lost += sizes.burst_events - outputs
    return outcome


def overlapping_syncs(sizes: Sizes, work: Path) -> Outcome:
    """A second sync while the first runs: refused with the holder; nothing corrupted."""
    with drive_folder(FaultConfig(latency_s=0.05)) as (root, emulator):
        fill(root, sizes.files)
        dest = open_storage(str(work / "dest"))
        pipeline = pipeline_for(dest.base_url, emulator.root_id, concurrency=2)
        runner = threading.Thread(target=run_sync, args=(SyncRequest(pipeline=pipeline),))
        runner.start()
        while not list(dest.list("_locks/")):
            time.sleep(0.01)
        try:
            run_sync(SyncRequest(pipeline=pipeline))
            refused = "second sync was NOT refused"
        except LeaseHeld as exc:
            refused = f"second refused: {exc}"[:60]
        runner.join()
        emulator.set_faults(FaultConfig())
        rerun = run_sync(SyncRequest(pipeline=pipeline))
    outcome = settle(dest, sizes.files, rerun.counts()["written"])
    outcome.note = refused
    if "NOT" in refused:
        outcome.duplicates += 1
    return outcome


# ---- load -----------------------------------------------------------------------------------
def many_files(sizes: Sizes, work: Path) -> Outcome:
    """A folder of many small files in one sync."""
    with drive_folder() as (root, emulator):
        fill(root, sizes.many_files, rows=5)
        dest = open_storage(str(work / "dest"))
        pipeline = pipeline_for(dest.base_url, emulator.root_id, concurrency=16)
        started = time.monotonic()
        manifest = run_sync(SyncRequest(pipeline=pipeline))
        seconds = time.monotonic() - started
    outcome = settle(dest, sizes.many_files)
    outcome.note = f"{sizes.many_files / seconds:.0f} files/s; {manifest.counts()['failed']} failed"
    return outcome


def big_csv(sizes: Sizes, work: Path) -> Outcome:
    """One big CSV (it streams when shared.transform.streaming is present and it is big enough)."""
    with drive_folder() as (root, emulator):
        path = root / "big.csv"
        rows = _write_big_csv(path, sizes.big_csv_mb * 1_000_000)
        dest = open_storage(str(work / "dest"))
        extra: dict[str, Any] = {"steps": [{"op": "derive", "column": "c", "expr": "a * b"}]}
        if "streaming" in Pipeline.model_fields:
            extra["streaming"] = {"threshold_mb": min(256, max(8, sizes.big_csv_mb // 4))}
        pipeline = pipeline_for(dest.base_url, emulator.root_id, **extra)
        started = time.monotonic()
        manifest = run_sync(SyncRequest(pipeline=pipeline))
        seconds = time.monotonic() - started
    record = manifest.inputs[0]
    ok = record.status == "written" and record.rows_out == rows
    mode = "streamed" if "streaming" in extra else "whole-table"
    note = f"{sizes.big_csv_mb / seconds:.0f} MB/s, {rows} rows, {mode}"
    if not ok:
        note += f"; {record.status}: {record.error}"
    return Outcome(1, 1 if ok else 0, 0, 0 if ok else 1, 0, note)


def _write_big_csv(path: Path, size: int) -> int:
    rng = random.Random(1)
    line_pool = [f"{rng.randint(0, 10**6)},{rng.random():.6f},name{n % 977}\n" for n in range(4096)]
    rows, written = 0, 0
    with path.open("w") as out:
        out.write("a,b,name\n")
        while written < size:
            chunk = "".join(line_pool)
            out.write(chunk)
            written += len(chunk)
            rows += len(line_pool)
    return rows


# ---- hostile input --------------------------------------------------------------------------
def bad_input(sizes: Sizes, work: Path) -> Outcome:
    """The whole bad-input corpus (tests/reliability/cases.py) plus good files, one sync."""
    with drive_folder() as (root, emulator):
        build_corpus(root)
        dest = open_storage(str(work / "dest"))
        body = corpus_pipeline_body(dest.base_url, emulator.root_id)
        pipeline = parse_config({"pipelines": {"rel": body}}).pipelines["rel"]
        manifest = run_sync(SyncRequest(pipeline=pipeline))
    cases = {path_id(c.path): c for c in CASES}
    written = failed_expected = wrong = 0
    for record in manifest.inputs:
        case = cases[record.source_id]
        if case.status == "written" and record.status == "written":
            written += 1
        elif (
            case.status == "failed"
            and record.status == "failed"
            and case.error in (record.error or "")
        ):
            failed_expected += 1 if dest.exists(record.quarantine_key or "_") else 0
        else:
            wrong += 1
    lost = len(CASES) - written - failed_expected
    note = f"{wrong} unexpected outcomes" if wrong else "every case as expected"
    return Outcome(len(CASES), written, failed_expected, lost, 0, note)


SCENARIOS: dict[str, Callable[[Sizes, Path], Outcome]] = {
    "drive faults (35% of requests)": drive_faults,
    "S3 outage mid-sync + re-run": s3_outage,
    "SIGKILL mid-sync + re-run": crash,
    "events delivered 1-5x, shuffled": duplicate_events,
    "overlapping syncs": overlapping_syncs,
    "bad-input corpus, one sync": bad_input,
    "many small files": many_files,
    "upload event burst": event_burst,
    "one big CSV": big_csv,
}
