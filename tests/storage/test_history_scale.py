"""Run history over 10,000 stored manifests, on moto_server S3 and the GCS emulator.

The manifests and their index entries are put straight through the SDK clients, in parallel
(one request each), as 10,000 finished runs of two pipelines would have left them; one run in
ten failed. Every HTTP request the listing sends is counted at the client (botocore's
``before-send`` event, a ``requests`` response hook for google-cloud-storage) and printed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from devstack.servers import GcsEmulator, MotoServer
from shared.cli import main
from shared.config import load_config_from_env
from shared.run import history
from shared.run.manifest import InputRecord, RunManifest
from shared.storage import Storage, open_storage
from shared.storage.layout import run_index_key, run_index_origin_key, run_index_view, run_key
from tests.conftest import unique_bucket_name

# Writing 20,500 objects takes minutes on a loaded machine (the GCS emulator serves one
# request at a time): slow, and with room past the suite's per-test timeout.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]
RUNS = 10_000
NEWEST = 20
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def run_id(n: int) -> str:
    return (T0 + timedelta(minutes=n)).strftime("%Y%m%dT%H%M%SZ") + f"-{n:08x}"


def manifest(n: int) -> dict[str, Any]:
    failed = n % 10 == 3
    record = InputRecord(
        source_id=f"f{n}",
        path=f"q{n}.csv",
        status="failed" if failed else "written",
        error="bad CSV" if failed else None,
        rows_out=None if failed else 10,
    )
    return RunManifest(
        run_id=run_id(n),
        pipeline="sales" if n % 2 else "hr",
        trigger="schedule",
        source="folder",
        destination="lake",
        ended_at=run_id(n),
        inputs=[record],
    ).to_dict()


READ_VIEWS = {run_index_view(), run_index_view("sales", "failed")}


def objects() -> Iterator[tuple[str, bytes]]:
    """What 10,000 runs leave: each manifest, and its entries in the views these tests read
    (the other two views are other prefixes, which no listing here touches)."""
    yield run_index_origin_key(), json.dumps({"run_id": run_id(0)}).encode()
    for n in range(RUNS):
        data = manifest(n)
        yield run_key(data["run_id"]), json.dumps(data).encode()
        entry = history.entry_of(data)
        body = json.dumps(entry).encode()
        for view in history.views(data["pipeline"], entry["status"]):
            if view in READ_VIEWS:
                yield run_index_key(view, data["run_id"]), body


@dataclass
class Lake:
    url: str
    dest: Storage
    count: Callable[[], list[str]]  # the requests sent since the last call
    close: Callable[[], object] = lambda: None


def _s3_lake(moto: MotoServer) -> Lake:
    bucket = moto.create_bucket(unique_bucket_name("runs"))
    client = moto.client("s3")
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(
            pool.map(
                lambda o: client.put_object(Bucket=bucket, Key=f"lake/{o[0]}", Body=o[1]), objects()
            )
        )
    dest = open_storage(f"s3://{bucket}/lake")
    sent: list[str] = []

    def count(request: Any, **_: Any) -> None:
        sent.append(f"{request.method} {request.url}")

    # botocore's before-send event, on the client every S3Storage of this environment shares
    dest.client.meta.events.register("before-send.s3", count)  # type: ignore[attr-defined]
    return Lake(
        f"s3://{bucket}/lake",
        dest,
        _drain(sent),
        lambda: dest.client.meta.events.unregister("before-send.s3", count),
    )  # type: ignore[attr-defined]


GCS_SENT: list[str] = []


def _gcs_lake(gcs: GcsEmulator) -> Lake:
    bucket_name = gcs.create_bucket(unique_bucket_name("runs"))
    bucket = gcs.client().bucket(bucket_name)
    with ThreadPoolExecutor(max_workers=4) as pool:  # the emulator serves one request at a time
        list(pool.map(lambda o: bucket.blob(f"lake/{o[0]}").upload_from_string(o[1]), objects()))
    dest = open_storage(f"gs://{bucket_name}/lake")
    sent = GCS_SENT
    return Lake(f"gs://{bucket_name}/lake", dest, _drain(sent))


def _count_gcs_requests(patch: pytest.MonkeyPatch, sent: list[str]) -> None:
    """Every google-cloud-storage request of any client in this process (each ``GcsStorage``
    has its own client, and the CLI opens its own), counted where requests sends it."""
    import requests

    send = requests.Session.send

    def counted(self: requests.Session, request: Any, **kwargs: Any) -> Any:
        sent.append(f"{request.method} {request.url}")
        return send(self, request, **kwargs)

    patch.setattr(requests.Session, "send", counted)


def _drain(sent: list[str]) -> Callable[[], list[str]]:
    def drain() -> list[str]:
        taken = list(sent)
        sent.clear()
        return taken

    return drain


@pytest.fixture(params=["s3", "gcs"])
def lake(request: pytest.FixtureRequest) -> Iterator[Lake]:
    """10,000 runs in a fresh bucket of the backend, the env pointed at its server."""
    with pytest.MonkeyPatch.context() as patch:
        if request.param == "s3":
            server = request.getfixturevalue("moto_server")
            for name, value in server.env().items():
                patch.setenv(name, value)
            lake = _s3_lake(server)
            yield lake
            lake.close()
        else:
            server = request.getfixturevalue("gcs_emulator")
            for name, value in server.env().items():
                patch.setenv(name, value)
            lake = _gcs_lake(server)
            _count_gcs_requests(patch, GCS_SENT)
            yield lake


def report(what: str, lake: Lake, sent: list[str]) -> None:
    """Print how many requests a listing sent: lists (S3 ``list-type=2``, GCS ``.../o?``), object
    reads, and others (google-cloud-storage fetches a bucket's metadata once per client)."""
    lists = sum(1 for line in sent if "list-type=2" in line or "/o?" in line)
    others = sum(1 for line in sent if "/b/" in line and "/o" not in line)
    print(
        f"\n{lake.url.split(':')[0]}: {what}: {len(sent)} storage requests "
        f"({lists} list, {len(sent) - lists - others} read, {others} other)"
    )


def test_ten_thousand_runs_page_newest_first_in_bounded_requests(
    lake: Lake, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One test per backend, so the 10,000 runs are written once per backend (and xdist
    workers do not each write them again)."""
    cli_lists_the_newest_twenty(lake, capsys)
    get_runs_pages_to_the_oldest(lake, tmp_path, capsys)


def cli_lists_the_newest_twenty(lake: Lake, capsys: pytest.CaptureFixture[str]) -> None:
    lake.count()
    assert main(["runs", "list", "--dest", lake.url, "--json"]) == 0
    sent = lake.count()
    page = json.loads(capsys.readouterr().out)
    assert [e["run_id"] for e in page["runs"]] == [
        run_id(n) for n in range(RUNS - 1, RUNS - 21, -1)
    ]
    assert page["next_cursor"] == run_id(RUNS - NEWEST)
    with capsys.disabled():
        report(f"drivepipe runs list, newest {NEWEST} of {RUNS:,}", lake, sent)
    assert 1 + NEWEST <= len(sent) <= NEWEST + 2  # one list, a read per run: not 10,000

    assert (
        main(
            [
                "runs",
                "list",
                "--dest",
                lake.url,
                "--json",
                "--pipeline",
                "sales",
                "--status",
                "failed",
            ]
        )
        == 0
    )
    sent = lake.count()
    failed = json.loads(capsys.readouterr().out)["runs"]
    expected = [n for n in range(RUNS - 1, -1, -1) if n % 10 == 3 and n % 2][:NEWEST]
    assert [e["run_id"] for e in failed] == [run_id(n) for n in expected]
    with capsys.disabled():
        report("--pipeline sales --status failed", lake, sent)
    assert 1 + NEWEST <= len(sent) <= NEWEST + 2


def get_runs_pages_to_the_oldest(
    lake: Lake, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from shared.triggers import routes, service

    config = tmp_path / "drivepipe.toml"
    config.write_text(
        f'[pipelines.sales]\noutput = {{ url = "{lake.url}" }}\n'
        f'[pipelines.hr]\noutput = {{ url = "{lake.url}" }}\n'
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DRIVEPIPE_CONFIG", str(config))
        load_config_from_env.cache_clear()
        service.configure(base_dir=tmp_path, default="drivepipe.toml")
        lake.count()
        first = routes.route("GET", "/runs", query={})
        sent = lake.count()
        assert first.status == 200 and len(first.body["runs"]) == NEWEST
        assert first.body["runs"][0]["run_id"] == run_id(RUNS - 1)
        with capsys.disabled():
            report(f"GET /runs, newest {NEWEST}", lake, sent)
        assert 1 + NEWEST <= len(sent) <= NEWEST + 2
        seen, cursor, pages = 0, None, 0
        while True:
            query = {"limit": "100", **({"cursor": cursor} if cursor else {})}
            page = routes.route("GET", "/runs", query=query)
            assert page.status == 200, page.body
            runs = page.body["runs"]
            assert runs and runs[0]["run_id"] == run_id(RUNS - 1 - seen)
            seen += len(runs)
            pages += 1
            cursor = page.body["next_cursor"]
            if cursor is None:
                break
        sent = lake.count()
        load_config_from_env.cache_clear()
    assert seen == RUNS and runs[-1]["run_id"] == run_id(0) and pages == RUNS // 100
    with capsys.disabled():
        report(f"GET /runs?limit=100, {pages} pages to the oldest", lake, sent)
    # per page: a list and its reads (and on GCS, the bucket metadata every new client fetches)
    assert RUNS + pages <= len(sent) <= pages * 103
