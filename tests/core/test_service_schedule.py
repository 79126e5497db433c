"""service.on_schedule: every pipeline gets its turn, then transient failures ask for redelivery."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shared import deadline
from shared.config import load_config_from_env
from shared.deadline import Deadline
from shared.errors import RetryableError, is_transient
from shared.triggers import service
from tests.core.conftest import DriveTree


@pytest.fixture
def schedule_config(
    drive_tree: DriveTree, tmp_path: Path, s3_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    config = tmp_path / "drivepipe.toml"
    config.write_text(f"""
[pipelines.good]
scheduled = true
source = {{ folder_id = "{drive_tree.folder_id}", include = ["sales/**"] }}
output = {{ url = "{tmp_path / "out"}" }}

[pipelines.unreachable]
scheduled = true
source = {{ folder_id = "{drive_tree.folder_id}", include = ["sales/**"] }}
output = {{ url = "s3://bucket-that-does-not-exist-dp/x" }}

[pipelines.manual]
source = {{ folder_id = "{drive_tree.folder_id}" }}
output = {{ url = "{tmp_path / "manual"}" }}
""")
    monkeypatch.setenv("DRIVEPIPE_CONFIG", str(config))
    load_config_from_env.cache_clear()
    yield config
    load_config_from_env.cache_clear()


def test_transient_failure_raises_after_the_other_pipelines_ran(
    schedule_config: Path, tmp_path: Path
) -> None:
    with pytest.raises(RetryableError, match="unreachable") as info:
        service.on_schedule(None, trigger="schedule")
    assert is_transient(info.value)
    # the healthy scheduled pipeline still ran; the unscheduled one did not
    assert (tmp_path / "out" / "good/sales__2024__q1.parquet").exists()
    assert not (tmp_path / "manual").exists()


def test_named_pipelines_and_unknown_names(schedule_config: Path, tmp_path: Path) -> None:
    results = service.on_schedule(["manual", "nope"], trigger="schedule")
    assert [r["pipeline"] for r in results] == ["manual", "nope"]
    assert results[0]["summary"]["counts"]["written"] >= 2
    assert results[1]["error"] == "unknown pipeline"


def test_pipelines_reached_after_the_function_s_time_are_not_started(
    schedule_config: Path, tmp_path: Path
) -> None:
    now = [0.0]
    with deadline.within(Deadline.after(60, source="test", clock=lambda: now[0], reserve=10)):
        now[0] = 55.0  # an earlier pipeline took the time
        results = service.on_schedule(["manual", "good"], trigger="schedule")
    assert [r["pipeline"] for r in results] == ["manual", "good"]
    assert all(r["skipped"].startswith("not started: the function had 5.0 s left") for r in results)
    assert not (tmp_path / "manual").exists() and not (tmp_path / "out").exists()
