"""process_input is the per-input boundary: a bug fails that input, infrastructure stops the run."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from shared.config import parse_config
from shared.errors import DriveError, LeaseLost, RetryableError, StorageError
from shared.run import process
from shared.run.manifest import InputRecord
from shared.run.process import process_input
from shared.storage import Storage, open_storage

DATA = b"id,amount\n1,2\n"


def _pipeline(url: str) -> Any:
    return parse_config({"pipelines": {"p": {"output": {"url": url}}}}).pipelines["p"]


def _raising(exc: BaseException) -> Any:
    def render(*_args: object, **_kwargs: object) -> None:
        raise exc

    return render


def _run(tmp_path: Path, dest: Storage | None = None) -> tuple[InputRecord, Storage]:
    dest = dest or open_storage(str(tmp_path / "out"))
    record = InputRecord(source_id="x", path="in/a.csv")
    process_input(_pipeline(str(tmp_path / "out")), dest, io.BytesIO(DATA), "csv", record, "r1")
    return record, dest


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (RecursionError("maximum recursion depth exceeded"), "RecursionError: maximum recursion"),
        (RuntimeError("a bug in a reader"), "RuntimeError: a bug in a reader"),
        (AttributeError("'NoneType' has no attribute 'x'"), "AttributeError: 'NoneType'"),
        (IndexError(), "IndexError"),
        (StorageError("reading the fetched file failed"), "StorageError: reading the fetched"),
    ],
)
def test_anything_rendering_raises_fails_only_that_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: Exception, reason: str
) -> None:
    monkeypatch.setattr(process, "render", _raising(exc))
    record, dest = _run(tmp_path)
    assert record.status == "failed"
    assert (record.error or "").startswith(reason)
    assert record.quarantine_key and dest.read(record.quarantine_key) == DATA
    assert record.output_keys == []


def test_a_recursion_error_says_the_input_is_nested_too_deeply(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(process, "render", _raising(RecursionError("maximum recursion depth")))
    record, _ = _run(tmp_path)
    assert "nested too deeply" in (record.error or "")


@pytest.mark.parametrize(
    "exc",
    [
        DriveError("rate limited", status=429),
        LeaseLost("sync/p was taken over"),
        RetryableError("destination unreachable"),
        KeyboardInterrupt(),
    ],
)
def test_the_runs_own_infrastructure_still_propagates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: BaseException
) -> None:
    monkeypatch.setattr(process, "render", _raising(exc))
    with pytest.raises(type(exc)):
        _run(tmp_path)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("*"))


class _BrokenDestination:
    """A destination whose every write fails (the store is down)."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner

    def write(self, key: str, body: object) -> None:
        raise StorageError(f"cannot write {key}: connection reset")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_destination_failure_writing_outputs_propagates(tmp_path: Path) -> None:
    dest = _BrokenDestination(open_storage(str(tmp_path / "out")))
    with pytest.raises(StorageError, match="connection reset"):
        _run(tmp_path, dest)  # type: ignore[arg-type]


def test_a_destination_failure_writing_the_quarantine_copy_propagates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(process, "render", _raising(ValueError("bad input")))
    dest = _BrokenDestination(open_storage(str(tmp_path / "out")))
    with pytest.raises(StorageError, match="_quarantine/"):
        _run(tmp_path, dest)  # type: ignore[arg-type]
