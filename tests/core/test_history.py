"""Run history on a local destination: the index, its views, paging, the fallback, the CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.cli import main
from shared.run import history
from shared.run.finish import finish_run
from shared.run.manifest import InputRecord, RunManifest
from shared.storage import Storage, open_storage
from shared.storage.layout import newest_first, run_index_view, run_key

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def run_id(n: int) -> str:
    """The n-th run id: one per minute from T0, so they sort by n."""
    return (T0 + timedelta(minutes=n)).strftime("%Y%m%dT%H%M%SZ") + f"-{n:08x}"


def manifest(n: int, *, pipeline: str = "sales", failed: bool = False) -> RunManifest:
    record = InputRecord(source_id=f"id{n}", path=f"f{n}.csv", status="written", rows_out=3)
    records = [record]
    if failed:
        records.append(
            InputRecord(
                source_id="bad",
                path="broken/bad.csv",
                status="failed",
                error="CSV parse error",
                quarantine_key=f"_quarantine/{run_id(n)}/broken/bad.csv",
            )
        )
    return RunManifest(
        run_id=run_id(n),
        pipeline=pipeline,
        trigger="test",
        source="folder",
        destination="dest",
        inputs=records,
    )


def store_runs(dest: Storage, count: int, **kwargs: object) -> list[str]:
    ids = []
    for n in range(count):
        finish_run(dest, manifest(n, **kwargs))  # type: ignore[arg-type]
        ids.append(run_id(n))
    return ids


@pytest.fixture
def dest(tmp_path: Path) -> Storage:
    return open_storage(str(tmp_path / "dest"))


def test_inverted_ids_sort_newest_first_and_invert_back() -> None:
    ids = [run_id(n) for n in range(30)] + ["20261231T235959Z-ffffffff", "20260101T000000Z-0"]
    inverted = sorted(newest_first(i) for i in ids)
    assert [newest_first(i) for i in inverted] == sorted(ids, reverse=True)


def test_a_finished_run_is_indexed_in_its_four_views(dest: Storage) -> None:
    finish_run(dest, manifest(1, failed=True))
    keys = [info.key for info in dest.list("_runs/index/")]
    views = {key.rsplit("/", 1)[0] + "/" for key in keys if not key.endswith("origin.json")}
    assert views == {
        run_index_view(),
        run_index_view(status="failed"),
        run_index_view("sales"),
        run_index_view("sales", "failed"),
    }
    entry = json.loads(dest.read(next(k for k in keys if k.startswith("_runs/index/all/"))))
    assert entry["run_id"] == run_id(1) and entry["status"] == "failed"
    assert entry["counts"] == {"written": 1, "failed": 1} and entry["quarantined"] == 1
    assert entry["manifest"] == run_key(run_id(1))


def test_pages_go_newest_first_to_the_oldest(dest: Storage) -> None:
    ids = store_runs(dest, 25)
    seen, cursor, pages = [], None, 0
    while True:
        page = history.list_runs(dest, limit=10, cursor=cursor)
        seen += [entry["run_id"] for entry in page.runs]
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == ids[::-1] and pages == 3


def test_filters_read_their_own_view(dest: Storage) -> None:
    for n in range(12):
        finish_run(dest, manifest(n, pipeline="sales" if n % 2 else "hr", failed=n % 3 == 0))
    failed = history.list_runs(dest, status="failed")
    assert [e["run_id"] for e in failed.runs] == [run_id(n) for n in (9, 6, 3, 0)]
    sales_failed = history.list_runs(dest, pipeline="sales", status="failed")
    assert [e["run_id"] for e in sales_failed.runs] == [run_id(9), run_id(3)]
    ok = history.list_runs(dest, pipeline="hr", status="ok", limit=2)
    assert [e["run_id"] for e in ok.runs] == [run_id(10), run_id(8)]
    assert ok.next_cursor == run_id(8)


def test_manifests_without_an_index_entry_follow_the_indexed_runs(dest: Storage) -> None:
    """Manifests written before the index (today's): listed after it, newest first, paged."""
    for n in range(5):  # written the old way: a manifest only
        dest.write(run_key(run_id(n)), manifest(n, failed=n == 1).to_json())
    store_runs_from(dest, range(5, 8))
    first = history.list_runs(dest, limit=4)
    assert [e["run_id"] for e in first.runs] == [run_id(n) for n in (7, 6, 5, 4)]
    second = history.list_runs(dest, limit=4, cursor=first.next_cursor)
    assert [e["run_id"] for e in second.runs] == [run_id(n) for n in (3, 2, 1, 0)]
    assert second.next_cursor is None
    assert [e["run_id"] for e in history.list_runs(dest, status="failed").runs] == [run_id(1)]
    # an old run the origin marker does not cover is not listed twice
    assert len({e["run_id"] for e in first.runs + second.runs}) == 8


def store_runs_from(dest: Storage, numbers: range) -> None:
    for n in numbers:
        finish_run(dest, manifest(n))


def test_reindex_writes_the_missing_entries_once(dest: Storage) -> None:
    for n in range(3):
        dest.write(run_key(run_id(n)), manifest(n).to_json())
    store_runs_from(dest, range(3, 5))
    assert history.reindex(dest) == 3
    assert history.reindex(dest) == 0
    keys = [i.key for i in dest.list(run_index_view())]
    assert len(keys) == 5
    assert history.unindexed_run_ids(dest) == []
    page = history.list_runs(dest, limit=10)
    assert [e["run_id"] for e in page.runs] == [run_id(n) for n in range(4, -1, -1)]


def test_merged_destinations_keep_one_order_and_cursor(tmp_path: Path) -> None:
    left, right = open_storage(str(tmp_path / "l")), open_storage(str(tmp_path / "r"))
    for n in range(6):
        finish_run(left if n % 2 else right, manifest(n))
    first = history.merge_pages([history.list_runs(d, limit=4) for d in (left, right)], 4)
    assert [e["run_id"] for e in first.runs] == [run_id(n) for n in (5, 4, 3, 2)]
    pages = [history.list_runs(d, limit=4, cursor=first.next_cursor) for d in (left, right)]
    second = history.merge_pages(pages, 4)
    assert [e["run_id"] for e in second.runs] == [run_id(1), run_id(0)]
    assert second.next_cursor is None


def test_cli_lists_and_shows_runs(
    dest: Storage, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store_runs(dest, 3)
    finish_run(dest, manifest(3, failed=True))
    url = str(tmp_path / "dest")
    assert main(["runs", "list", "--dest", url, "--json", "--limit", "2"]) == 0
    page = json.loads(capsys.readouterr().out)
    assert [e["run_id"] for e in page["runs"]] == [run_id(3), run_id(2)]
    assert page["next_cursor"] == run_id(2)
    assert main(["runs", "list", "--dest", url, "--status", "failed"]) == 0
    table = capsys.readouterr().out
    assert run_id(3) in table and run_id(2) not in table and "failed" in table
    assert main(["runs", "show", run_id(3), "--dest", url]) == 0
    shown = capsys.readouterr().out
    assert "broken/bad.csv" in shown and "CSV parse error" in shown and "quarantined at" in shown
    assert main(["runs", "show", run_id(9), "--dest", url]) == 2
    assert "no run" in capsys.readouterr().err


def test_cli_reads_the_pipelines_destination_from_the_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = str(tmp_path / "lake")
    config = tmp_path / "p.toml"
    config.write_text(
        f'[pipelines.sales]\noutput = {{ url = "{url}" }}\n'
        f'[pipelines.hr]\noutput = {{ url = "{tmp_path / "hr"}" }}\n'
    )
    finish_run(open_storage(url), manifest(1))
    finish_run(open_storage(str(tmp_path / "hr")), manifest(2, pipeline="hr"))
    args = ["runs", "list", "--config", str(config), "--json"]
    assert main([*args, "--pipeline", "sales"]) == 0
    assert [e["run_id"] for e in json.loads(capsys.readouterr().out)["runs"]] == [run_id(1)]
    assert main(args) == 0  # every pipeline's destination, merged
    assert [e["run_id"] for e in json.loads(capsys.readouterr().out)["runs"]] == [
        run_id(2),
        run_id(1),
    ]
    assert main(["runs", "list"]) == 2  # neither --dest nor --config
    assert "--dest" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["0", "101", "x"])
def test_cli_rejects_a_bad_limit(bad: str, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["runs", "list", "--dest", str(tmp_path), "--limit", bad])
    assert exit_info.value.code == 2


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Storage:
    """The HTTP service configured with one pipeline writing to a local destination."""
    from shared.config import load_config_from_env
    from shared.triggers import service

    url = tmp_path / "lake"
    config = tmp_path / "drivepipe.toml"
    config.write_text(f'[pipelines.sales]\noutput = {{ url = "{url}" }}\n')
    monkeypatch.setenv("DRIVEPIPE_CONFIG", str(config))
    load_config_from_env.cache_clear()
    service.configure(base_dir=tmp_path, default="drivepipe.toml")
    yield open_storage(str(url))
    load_config_from_env.cache_clear()


def test_get_runs_pages_with_a_cursor(served: Storage) -> None:
    from shared.triggers import routes

    store_runs(served, 5)
    first = routes.route("GET", "/runs", query={"limit": "3"})
    assert first.status == 200
    assert [e["run_id"] for e in first.body["runs"]] == [run_id(4), run_id(3), run_id(2)]
    rest = routes.route("GET", "/runs", query={"cursor": first.body["next_cursor"]})
    assert [e["run_id"] for e in rest.body["runs"]] == [run_id(1), run_id(0)]
    assert rest.body["next_cursor"] is None
    only = routes.route("GET", "/runs", query={"pipeline": "sales", "status": "ok"})
    assert len(only.body["runs"]) == 5


@pytest.mark.parametrize(
    ("query", "field", "status"),
    [
        ({"limit": "0"}, "limit", 400),
        ({"limit": "abc"}, "limit", 400),
        ({"limit": "101"}, "limit", 400),
        ({"status": "weird"}, "status", 400),
        ({"cursor": "../../etc"}, "cursor", 400),
        ({"colour": "red"}, "colour", 400),
        ({"pipeline": "nope"}, "pipeline", 404),
    ],
)
def test_get_runs_rejects_bad_parameters_with_json(
    served: Storage, query: dict[str, str], field: str, status: int
) -> None:
    from shared.triggers import routes

    response = routes.route("GET", "/runs", query=query)
    assert response.status == status
    assert response.body["error"]["field"] == field
