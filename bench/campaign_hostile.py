"""Campaign scenarios with hostile input and hostile callers: the hostile corpus, colliding
names, renames, the folder_id override attack and corrupted Sheets exports."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pandas as pd

from bench.campaign_core import (
    FAST_RETRY,
    Outcome,
    Sizes,
    destination,
    drive_folder,
    pipeline_for,
    settle,
    shared_moto,
)
from devstack.drive_emulator import FaultConfig, path_id
from shared.config import load_config_from_env, parse_config
from shared.drive import DriveClient
from shared.run.sync import SyncRequest, run_sync
from shared.storage import Storage, open_storage
from tests.reliability import hostile
from tests.reliability.helpers import toml_dumps
from tests.reliability.lake import Row, tagged_rows, write_tagged_csv


def hostile_corpus(sizes: Sizes, work: Path, backend: str) -> Outcome:
    """Issue 19's hostile files beside good ones, one sync with the default limits: each
    hostile file fails with its exact reason and a quarantine copy, each good one is written."""
    dest = destination(backend, work, "hostile")
    cases = hostile.corpus()
    with drive_folder() as (root, emulator):
        hostile.build(root, cases)
        pipeline = pipeline_for(dest.url, emulator.root_id)
        started = time.monotonic()
        manifest = run_sync(SyncRequest(pipeline=pipeline))
        seconds = time.monotonic() - started
    by_id = {path_id(case.path): case for case in cases}
    expected: dict[str, list[Row]] = {}
    failed_ok, problems = 0, []
    for record in manifest.inputs:
        case = by_id.get(record.source_id)
        if case is None:
            problems.append(f"unknown input {record.path!r}")
        elif case.error is None:
            if record.status != "written":
                problems.append(f"{record.path}: {record.status} {record.error}")
        elif record.status == "failed" and re.fullmatch(case.error, record.error or "", re.S):
            if record.quarantine_key and dest.storage.exists(record.quarantine_key):
                failed_ok += 1
            else:
                problems.append(f"{record.path}: no quarantine copy")
        else:
            problems.append(f"{record.path}: {record.status} {record.error!r}")
    for case in cases:
        if case.rows is not None:
            expected[case.path] = case.rows
    outcome = settle(
        dest.storage,
        expected,
        failed_expected=failed_ok,
        leftovers=dest.leftovers(),
    )
    outcome.inputs = len(cases)
    outcome.lost += len(cases) - len(manifest.inputs)
    outcome.problems += problems
    slow = [c for c in cases if c.path == "bad/slow.xlsx"]
    outcome.note = (
        f"{seconds:.1f} s, {seconds / len(cases):.2f} s per file; every hostile file failed "
        f"with its exact reason" + (f" (incl. {len(slow)} 180 MB-XML xlsx)" if slow else "")
    )
    return outcome


def bad_input(sizes: Sizes, work: Path, backend: str) -> Outcome:
    """The bad-input corpus (tests/reliability/cases.py) plus good files, one sync: each
    failure with its reason and a quarantine copy, each success read back, row for row."""
    from tests.reliability.cases import CASES, build_corpus, corpus_pipeline_body
    from tests.reliability.lake import read_output

    dest = destination(backend, work, "corpus")
    with drive_folder() as (root, emulator):
        build_corpus(root)
        body = corpus_pipeline_body(dest.url, emulator.root_id)
        pipeline = parse_config({"pipelines": {"rel": body}}).pipelines["rel"]
        manifest = run_sync(SyncRequest(pipeline=pipeline))
    cases = {path_id(c.path): c for c in CASES}
    outcome = Outcome(len(CASES), 0, leftovers=dest.leftovers())
    for record in manifest.inputs:
        case = cases[record.source_id]
        if case.status == "written" and record.status == "written":
            rows = sum(len(read_output(dest.storage.read(k), k)) for k in record.output_keys)
            if case.rows is None or rows == case.rows:
                outcome.written += 1
            else:
                outcome.lost += 1
                outcome.problems.append(f"{record.path}: read back {rows} rows, not {case.rows}")
        elif case.status == "failed" and record.status == "failed" and record.error:
            if not record.error.startswith(case.error) and case.error not in record.error:
                outcome.problems.append(f"{record.path}: {record.error!r}")
            elif record.quarantine_key and dest.storage.exists(record.quarantine_key):
                outcome.failed_expected += 1
            else:
                outcome.problems.append(f"{record.path}: no quarantine copy")
        else:
            outcome.problems.append(f"{record.path}: {record.status} {record.error!r}")
    outcome.lost += len(CASES) - len(manifest.inputs)
    outcome.note = "every case as expected" if not outcome.problems else ""
    return outcome


def collisions(sizes: Sizes, work: Path, backend: str) -> Outcome:
    """Names that share an output key: a.csv and a.xlsx, `sub\\b.csv` and sub/b.csv, a file
    k.tsv beside a folder k.csv/, and three names that are one after sanitising."""
    dest = destination(backend, work, "collide")
    with drive_folder() as (root, emulator):
        expected = {"a-csv": write_tagged_csv(root / "a.csv", "a-csv", 3)}
        frame = pd.DataFrame({"file": ["a-xlsx"] * 2, "row": [0, 1]})
        frame.to_excel(root / "a.xlsx", index=False)
        expected["a-xlsx"] = tagged_rows("a-xlsx", 2)
        expected["sub-b"] = write_tagged_csv(root / "sub" / "b.csv", "sub-b", 2)
        expected["root-b"] = write_tagged_csv(root / "rootb.csv", "root-b", 2)
        expected["k-tsv"] = [("k-tsv", "0")]
        (root / "k.tsv").write_text("file\trow\nk-tsv\t0\n")
        expected["k-inner"] = write_tagged_csv(root / "k.csv" / "x.csv", "k-inner", 2)
        names = {"n1.csv": "c\x00d.csv", "n2.csv": "c\nd.csv", "n3.csv": "c_d.csv"}
        for disk in names:
            tag = disk.removesuffix(".csv")
            expected[tag] = write_tagged_csv(root / "names" / disk, tag, 2)
        entries = {"rootb.csv": {"name": "sub\\b.csv"}}
        (root / ".drive.json").write_text(json.dumps({"entries": entries}))
        (root / "names" / ".drive.json").write_text(
            json.dumps({"entries": {disk: {"name": name} for disk, name in names.items()}})
        )
        output = {"url": dest.url, "format": "csv"}  # k.tsv -> k.csv, beside the folder k.csv/
        pipeline = pipeline_for(dest.url, emulator.root_id, output=output)
        first = run_sync(SyncRequest(pipeline=pipeline))
        again = run_sync(SyncRequest(pipeline=pipeline))  # the same keys on every run
    outcome = settle(dest.storage, expected, leftovers=dest.leftovers())
    keys = [k for r in first.inputs for k in r.output_keys]
    outcome.check(len(keys) == len(set(keys)), f"two inputs share a key: {sorted(keys)}")
    outcome.check(first.counts()["written"] == len(expected), f"{first.counts()}")
    outcome.check(again.counts()["skipped_unchanged"] == len(expected), f"{again.counts()}")
    renamed = sum(1 for r in first.inputs if r.renamed)
    outcome.note = f"{len(keys)} distinct keys, {renamed} disambiguated; stable on a re-run"
    return outcome


def renames(sizes: Sizes, work: Path, backend: str) -> Outcome:
    """Files renamed, moved between folders, a folder renamed, one deleted, one edited and a
    workbook losing a sheet: the lake then holds exactly the folder's rows, no stale ones."""
    dest = destination(backend, work, "renames")
    with drive_folder() as (root, emulator):
        for n in range(6):
            write_tagged_csv(root / "x" / f"f{n}.csv", f"f{n}", 3)
        write_tagged_csv(root / "y" / "g.csv", "g", 3)
        with pd.ExcelWriter(root / "book.xlsx") as writer:
            for sheet in ("S1", "S2"):
                frame = pd.DataFrame({"file": [f"book-{sheet}"] * 2, "row": [0, 1]})
                frame.to_excel(writer, sheet_name=sheet, index=False)
        pipeline = pipeline_for(dest.url, emulator.root_id, read={"excel": {"sheets": "all"}})
        run_sync(SyncRequest(pipeline=pipeline))
        (root / "x" / "f0.csv").rename(root / "x" / "f0-renamed.csv")
        (root / "x" / "f1.csv").rename(root / "y" / "f1.csv")
        (root / "y").rename(root / "z")  # a folder renamed, with g and the moved f1
        (root / "x" / "f2.csv").unlink()
        write_tagged_csv(root / "x" / "f3.csv", "f3-v2", 4)
        with pd.ExcelWriter(root / "book.xlsx") as writer:
            pd.DataFrame({"file": ["book-S1"] * 2, "row": [0, 1]}).to_excel(
                writer, sheet_name="S1", index=False
            )
        second = run_sync(SyncRequest(pipeline=pipeline))
    expected = {f"f{n}": tagged_rows(f"f{n}", 3) for n in (0, 1, 4, 5)}
    expected.update({"g": tagged_rows("g", 3), "f3": tagged_rows("f3-v2", 4)})
    expected["book-S1"] = tagged_rows("book-S1", 2)
    outcome = settle(dest.storage, expected, leftovers=dest.leftovers())
    counts = second.counts()
    outcome.check(counts["removed"] == 1, f"removed {counts['removed']}, expected 1 (f2)")
    outcome.note = (
        f"moved {counts['moved']}, removed {counts['removed']}, written {counts['written']}; "
        "no stale row"
    )
    return outcome


def _pipeline_objects(storage: Storage) -> dict[str, bytes]:
    """The pipeline's own objects: outputs and state (not manifests, locks, isolated runs)."""
    skip = ("_folders/", "_runs/", "_locks/")
    return {o.key: storage.read(o.key) for o in storage.list() if not o.key.startswith(skip)}


def override_attack(sizes: Sizes, work: Path, backend: str) -> Outcome:
    """POST /sync, a request file and `drivepipe sync --folder` name another folder: refused
    unless listed, else run under their own prefix; the pipeline's objects stay identical."""
    from shared.cli import main as cli_main
    from shared.triggers import service
    from shared.triggers.events import ObjectEvent

    dest = destination(backend, work, "override")
    moto = shared_moto()
    inbox = moto.create_bucket(f"campaign-inbox-{os.getpid()}")
    with drive_folder() as (root, emulator):
        prod = {
            f"p{n}": write_tagged_csv(root / "prod" / f"r{n}.csv", f"p{n}", 3) for n in range(5)
        }
        other = {
            f"o{n}": write_tagged_csv(root / "other" / f"r{n}.csv", f"o{n}", 2) for n in range(5)
        }
        body = {"source": {"folder_id": emulator.id_for("prod")}, "output": {"url": dest.url}}
        settings = {"requests_url": f"s3://{inbox}/requests/"}

        def deploy(pipeline: dict[str, object]) -> Path:
            path = work / "override.toml"
            path.write_text(toml_dumps({"settings": settings, "pipelines": {"sales": pipeline}}))
            os.environ["DRIVEPIPE_CONFIG"] = str(path)
            load_config_from_env.cache_clear()
            return path

        config = deploy(body)
        outcome = Outcome(0, 0)
        outcome.check(cli_main(["sync", "--config", str(config)]) == 0, "the first sync failed")
        before = _pipeline_objects(dest.storage)
        attack = {"pipeline": "sales", "folder_id": emulator.id_for("other")}
        raw = json.dumps({**attack, "full_refresh": True}).encode()

        def request_file(name: str) -> str:
            moto.client().put_object(Bucket=inbox, Key=f"requests/{name}.json", Body=raw)
            event = ObjectEvent("s3", inbox, f"requests/{name}.json", name)
            return str(service.on_object(event, trigger="campaign")["outcome"])

        refused = service.http_sync(raw)
        outcome.check(refused.status == 400, f"unlisted folder_id answered {refused.status}")
        outcome.check(request_file("r1") == "ignored", "an unlisted request file was run")
        code = cli_main(["sync", "--config", str(config), "--folder", attack["folder_id"]])
        outcome.check(code == 0, f"drivepipe sync --folder exited {code}")
        deploy({**body, "allow_overrides": ["folder_id", "full_refresh"]})
        allowed = service.http_sync(raw)
        outcome.check(allowed.status == 200, f"a listed folder_id answered {allowed.status}")
        outcome.check(request_file("r2") == "sync", "a listed request file did not run")
        regular = service.http_sync(b'{"pipeline": "sales"}')
        outcome.check(regular.status == 200, f"the regular sync answered {regular.status}")
    after = _pipeline_objects(dest.storage)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    outcome.check(not changed, f"the pipeline's objects changed: {changed[:3]}")
    table = settle(dest.storage, prod, pipeline="sales", leftovers=dest.leftovers())
    scope = open_storage(f"{dest.url}/_folders/{attack['folder_id']}")
    isolated = settle(scope, other, pipeline="sales", leftovers=0)
    table.add(isolated)
    table.problems += outcome.problems
    table.note = "4 attacks (HTTP, request file, unlisted and listed; CLI); table byte-identical"
    return table


def export_corruption(sizes: Sizes, work: Path, backend: str) -> Outcome:
    """Native Sheets exported while 30% of exports are corrupted: no wrong value is written;
    exports that never verify are fetched again by the next run."""
    dest = destination(backend, work, "exports")
    faults = FaultConfig(rate=0.3, kinds=("corrupt",), seed=3)
    with drive_folder(faults) as (root, emulator):
        expected = {}
        for n in range(sizes.exports):
            tag = f"s{n:03d}"
            body = "file,row\n" + "".join(f"{tag},{26 + i}\n" for i in range(30))
            (root / f"{tag}.gsheet.csv").write_text(body)
            expected[tag] = [(tag, str(26 + i)) for i in range(30)]
        pipeline = pipeline_for(dest.url, emulator.root_id, concurrency=4)
        first = run_sync(
            SyncRequest(pipeline=pipeline), drive=DriveClient.from_env(retry=FAST_RETRY)
        )
        corrupted = emulator.stats.snapshot()["faults"].get("corrupt", 0)
        done = {r.path for r in first.inputs if r.status == "written"}
        after_first = settle(dest.storage, {t: r for t, r in expected.items() if t in done})
        emulator.set_faults(FaultConfig())
        run_sync(SyncRequest(pipeline=pipeline))
    outcome = settle(dest.storage, expected, leftovers=dest.leftovers())
    outcome.check(corrupted > 0, "no export was corrupted: the scenario tested nothing")
    outcome.check(
        after_first.stale == 0 and after_first.lost == 0,
        f"wrong values after the faulty run: {after_first.stale} stale rows",
    )
    outcome.note = (
        f"{corrupted} corrupted exports; {len(done)}/{sizes.exports} verified in the faulty "
        f"run with no wrong value, the rest by the next"
    )
    return outcome
