"""The drivepipe command line, run in-process against the real Drive emulator."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import pytest

from shared.cli import EXIT_FAILED_INPUTS, EXIT_OK, EXIT_USAGE, main
from tests.core.conftest import SALES_Q1, DriveTree

CONFIG = """
[pipelines.sales]
source = {{ folder_id = "{folder}", include = ["sales/**"] }}
steps = [ {{ op = "derive", column = "revenue", expr = "units * unit_price" }} ]
output = {{ url = "{dest}", format = "csv" }}
"""


def test_sync_without_config_converts_files_and_prints_json(
    drive_tree: DriveTree, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "out"
    code = main(
        [
            "sync",
            "--folder",
            drive_tree.folder_id,
            "--dest",
            str(dest),
            "--include",
            "sales/**",
            "--format",
            "jsonl",
            "--json",
        ]
    )
    assert code == EXIT_OK
    summary = json.loads(capsys.readouterr().out)
    assert summary["counts"]["written"] == 2
    assert summary["manifest"].startswith(str(dest))
    rows = pd.read_json(dest / "sales/2024/q1.jsonl", lines=True)
    assert rows["order_id"].tolist() == [1, 2, 3]  # unchanged: no steps without a config


def test_sync_exits_1_when_an_input_failed(
    drive_tree: DriveTree, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "sync",
            "--folder",
            drive_tree.folder_id,
            "--dest",
            str(tmp_path / "o"),
            "--include",
            "broken/**",
        ]
    )
    assert code == EXIT_FAILED_INPUTS
    out = capsys.readouterr().out
    assert "failed" in out and "broken/bad.csv" in out


def test_sync_with_config_and_dry_run(
    drive_tree: DriveTree, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "p.toml"
    config.write_text(CONFIG.format(folder=drive_tree.folder_id, dest=tmp_path / "out"))
    assert main(["sync", "--config", str(config), "--dry-run", "--json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["counts"]["planned"] == 2
    assert not (tmp_path / "out").exists()
    assert main(["sync", "--config", str(config), "--pipeline", "sales"]) == EXIT_OK
    frame = pd.read_csv(tmp_path / "out" / "sales/sales__2024__q1.csv")
    assert frame["revenue"].tolist() == [7.5, 0.0, 5.0]


def test_config_error_exits_2_and_names_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "p.toml"
    config.write_text('[pipelines.x]\noutput = { url = "/tmp/x", format = "xml" }\n')
    assert main(["validate", str(config)]) == EXIT_USAGE
    assert "pipelines.x.output.format" in capsys.readouterr().err
    assert main(["sync", "--config", str(config)]) == EXIT_USAGE


def test_transform_one_local_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "in" / "q1.csv"
    source.parent.mkdir()
    source.write_text(SALES_Q1)
    assert main(["transform", str(source), "--dest", str(tmp_path / "out")]) == EXIT_OK
    assert len(pd.read_parquet(tmp_path / "out" / "q1.parquet")) == 3
    assert main(["transform", str(tmp_path / "missing.csv"), "--dest", "x"]) == EXIT_USAGE


def test_missing_drive_credentials_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in (
        "DRIVE_API_KEY",
        "DRIVE_ACCESS_TOKEN",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "DRIVE_SERVICE_ACCOUNT_JSON",
    ):
        monkeypatch.delenv(name, raising=False)
    code = main(["sync", "--folder", "abc", "--dest", str(tmp_path / "o")])
    assert code == EXIT_USAGE
    assert "DRIVE_API_KEY" in capsys.readouterr().err


def test_log_level_is_case_insensitive_and_a_bad_one_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "p.toml"
    config.write_text(CONFIG.format(folder="abc", dest=tmp_path / "out"))
    assert main(["--log-level", "debug", "validate", str(config)]) == EXIT_OK
    assert logging.getLogger("drivepipe").level == logging.DEBUG
    with pytest.raises(SystemExit) as exited:
        main(["--log-level", "loud", "validate", str(config)])
    assert exited.value.code == EXIT_USAGE
    assert "'loud' is not one of DEBUG, INFO, WARNING, ERROR" in capsys.readouterr().err
    monkeypatch.setenv("DRIVEPIPE_LOG_LEVEL", "verbose")
    assert main(["validate", str(config)]) == EXIT_USAGE
    assert "DRIVEPIPE_LOG_LEVEL 'VERBOSE' is not one of" in capsys.readouterr().err


def test_global_options_before_a_dev_tool_reach_it(capsys: pytest.CaptureFixture[str]) -> None:
    from devstack.cli import main  # the console script: the core's commands plus local tools

    with pytest.raises(SystemExit) as exited:
        main(["--log-level", "WARNING", "emulator", "--help"])
    assert exited.value.code == EXIT_OK
    assert "--root" in capsys.readouterr().out
    assert logging.getLogger("drivepipe").level == logging.WARNING
    assert main(["dev", "--help"]) == EXIT_OK
    assert "drivepipe dev aws --help" in capsys.readouterr().out
    assert main(["dev", "azure"]) == EXIT_USAGE


def test_dest_flag_is_validated_like_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "p.toml"
    config.write_text(CONFIG.format(folder="abc", dest=tmp_path / "out"))
    assert main(["sync", "--config", str(config), "--dest", "ftp://host/x"]) == EXIT_USAGE
    assert "--dest: 'ftp://host/x' must be s3://bucket/prefix" in capsys.readouterr().err
    # one slash short: not silently a local directory called "s3:"
    assert main(["sync", "--folder", "abc", "--dest", "s3:/bucket/x"]) == EXIT_USAGE
    assert "'s3:/bucket/x' must be s3://bucket/prefix" in capsys.readouterr().err
    assert main(["transform", str(config), "--config", str(config), "--dest", "gs:b/x"]) == (
        EXIT_USAGE
    )
    assert list(tmp_path.iterdir()) == [config]


def test_wrong_folder_id_names_the_setting_to_fix(
    drive_tree: DriveTree, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["sync", "--folder", "1NoSuchFolder", "--dest", str(tmp_path / "o")])
    assert code == EXIT_USAGE  # the folder id to fix, not a service to wait for
    err = capsys.readouterr().err
    assert "Drive folder 1NoSuchFolder not found" in err and "--folder" in err
    assert not list((tmp_path / "o").rglob("_runs/*"))


def test_the_core_cli_knows_no_local_tools(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["emulator"])
    assert exited.value.code == EXIT_USAGE
    assert "invalid choice: 'emulator'" in capsys.readouterr().err


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_another_folder_syncs_into_its_own_prefix_and_leaves_the_pipeline_alone(
    drive_tree: DriveTree, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "p.toml"
    config.write_text(CONFIG.format(folder="1Unused", dest=tmp_path / "out"))
    # The pipeline's own folder (1Unused) does not exist; its outputs are whatever they are.
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "report.csv").write_text("id\n1\n")
    before = _tree_bytes(tmp_path / "out")
    capsys.readouterr()
    code = main(["sync", "--config", str(config), "--folder", drive_tree.folder_id, "--json"])
    assert code == EXIT_OK
    summary = json.loads(capsys.readouterr().out)
    scope = tmp_path / "out" / "_folders" / drive_tree.folder_id
    assert summary["destination"] == str(scope)
    assert any("its own state and outputs" in note for note in summary["notes"])
    assert (scope / "sales/sales__2024__q1.csv").exists() and (scope / "_state/sales.json").exists()
    after = _tree_bytes(tmp_path / "out")
    assert {k: v for k, v in after.items() if not k.startswith("_folders/")} == before


def test_the_cli_takes_every_override_without_allow_overrides(
    drive_tree: DriveTree, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The owner's tool: allow_overrides (empty by default) governs remote callers only."""
    config = tmp_path / "p.toml"
    config.write_text(CONFIG.format(folder=drive_tree.folder_id, dest=tmp_path / "out"))
    assert main(["sync", "--config", str(config), "--dry-run"]) == EXIT_OK
    assert not (tmp_path / "out" / "sales").exists()
    since = ["--since", "2000-01-01T00:00:00Z", "--full-refresh", "--force-removals"]
    assert main(["sync", "--config", str(config), *since]) == EXIT_OK
    assert (tmp_path / "out" / "sales/sales__2024__q1.csv").exists()


def test_a_listed_alias_folder_syncs_into_the_pipeline(
    drive_tree: DriveTree, tmp_path: Path
) -> None:
    config = tmp_path / "p.toml"
    body = CONFIG.format(folder="1Unused", dest=tmp_path / "out")
    config.write_text(
        body.replace("include = [", f'alias_folder_ids = ["{drive_tree.folder_id}"], include = [')
    )
    assert main(["sync", "--config", str(config), "--folder", drive_tree.folder_id]) == EXIT_OK
    assert (tmp_path / "out" / "sales/sales__2024__q1.csv").exists()
