"""Pipeline file loading: valid files load once; every error names the field and the file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shared.config import adhoc_pipeline, load_config, load_config_from_env, parse_config
from shared.errors import ConfigError

GOOD = """
[settings]
requests_url = "s3://in-bucket/requests"
schedule = "rate(1 hour)"

[pipelines.sales]
scheduled = true
read = { csv = { delimiter = ";" }, excel = { sheets = "all" } }
steps = [
  { op = "normalize_columns" },
  { op = "cast", columns = { units = "int64" } },
  { op = "filter", expr = "units > 0" },
]

[pipelines.sales.source]
folder_id = "1AbC_def-2"
include = ["sales/**"]
incoming_url = "s3://in-bucket/incoming/sales"

[pipelines.sales.output]
url = "${OUT_URL:-s3://out-bucket/sales}"
format = "parquet"
partition_by = ["region"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "drivepipe.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_good_file_loads_with_defaults_and_normalised_prefixes(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD))
    sales = cfg.pipelines["sales"]
    assert sales.name == "sales"
    assert sales.scheduled is True
    assert sales.source.incoming_url == "s3://in-bucket/incoming/sales/"
    assert cfg.settings.requests_url == "s3://in-bucket/requests/"
    assert [s.op for s in sales.steps] == ["normalize_columns", "cast", "filter"]
    assert sales.output.url == "s3://out-bucket/sales"  # default of the ${VAR:-default}
    assert sales.output.partition_by == ("region",)
    assert sales.read.csv.delimiter == ";"
    assert sales.concurrency == 16  # requests in flight, listing and downloads (#18)


def test_env_interpolation_uses_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OUT_URL", "gs://prod-bucket/lake")
    assert (
        load_config(write(tmp_path, GOOD)).pipelines["sales"].output.url == "gs://prod-bucket/lake"
    )


def test_missing_env_variable_names_the_field(tmp_path: Path) -> None:
    text = GOOD.replace("${OUT_URL:-s3://out-bucket/sales}", "${SURELY_UNSET_VAR_123}")
    with pytest.raises(ConfigError, match=r"pipelines\.sales\.output\.url: .*SURELY_UNSET_VAR_123"):
        load_config(write(tmp_path, text))


@pytest.mark.parametrize(
    ("replace", "by", "expected"),
    [
        ('format = "parquet"', 'format = "xml"', r"pipelines\.sales\.output\.format"),
        ("scheduled = true", 'scheduled = "often"', r"pipelines\.sales\.scheduled"),
        (
            '{ op = "filter", expr = "units > 0" }',
            '{ op = "explode" }',
            r"pipelines\.sales\.steps\[2\]",
        ),
        (
            '{ op = "cast", columns = { units = "int64" } }',
            '{ op = "cast" }',
            r"pipelines\.sales\.steps\[1\]\.cast\.columns: Field required",
        ),
        (
            "scheduled = true",
            "scheduled = true\ncolour = 'blue'",
            r"pipelines\.sales\.colour: unknown field",
        ),
        ('"${OUT_URL:-s3://out-bucket/sales}"', '"ftp://x/y"', r"pipelines\.sales\.output\.url"),
        (
            'partition_by = ["region"]',
            'compression = "bzip2"',
            r"pipelines\.sales\.output: .*compression 'bzip2'",
        ),
        (
            'folder_id = "1AbC_def-2"',
            'folder_id = "../etc"',
            r"pipelines\.sales\.source\.folder_id",
        ),
        ('"rate(1 hour)"', '"rate(1 hours"', r"settings\.schedule: .*not a schedule expression"),
        ('"rate(1 hour)"', '"rate(2 hour)"', r"settings\.schedule: .*write rate\(2 hours\)"),
        ('"rate(1 hour)"', '"rate(0 minutes)"', r"settings\.schedule: .*at least 1"),
        ('"rate(1 hour)"', '"cron(0 6 * * *)"', r"settings\.schedule: .*6 fields"),
        ('"rate(1 hour)"', '"cron(0 6 * * MON *)"', r"settings\.schedule: .*must be '\?'"),
    ],
)
def test_errors_name_the_field_and_the_file(
    tmp_path: Path, replace: str, by: str, expected: str
) -> None:
    assert replace in GOOD
    path = write(tmp_path, GOOD.replace(replace, by, 1))
    with pytest.raises(ConfigError, match=expected) as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_invalid_toml_and_missing_file_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(write(tmp_path, "[pipelines.x\n"))
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


def test_a_missing_deployed_config_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRIVEPIPE_CONFIG", str(tmp_path / "gone.toml"))
    load_config_from_env.cache_clear()
    try:
        with pytest.raises(ConfigError, match=r"gone\.toml \(from DRIVEPIPE_CONFIG\)"):
            load_config_from_env()
    finally:
        load_config_from_env.cache_clear()


def test_a_relative_config_path_is_found_from_the_handler_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The handler's directory anchors a relative path (or the default); env stays unchanged."""
    handler_dir = tmp_path / "app"
    (handler_dir / "lib").mkdir(parents=True)
    (handler_dir / "lib" / "p.toml").write_text(GOOD)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DRIVEPIPE_CONFIG", "lib/p.toml")
    load_config_from_env.cache_clear()
    try:
        assert "sales" in load_config_from_env(handler_dir).pipelines
        monkeypatch.delenv("DRIVEPIPE_CONFIG")
        load_config_from_env.cache_clear()
        assert "sales" in load_config_from_env(handler_dir, "lib/p.toml").pipelines
        assert "DRIVEPIPE_CONFIG" not in os.environ
        with pytest.raises(ConfigError, match=r"missing\.toml \(from the default"):
            load_config_from_env(handler_dir, "missing.toml")
    finally:
        load_config_from_env.cache_clear()


def test_file_without_pipelines_is_rejected() -> None:
    with pytest.raises(ConfigError, match="pipelines"):
        parse_config({"settings": {}})


def test_adhoc_pipeline_converts_unchanged() -> None:
    pipeline = adhoc_pipeline(output_url="/tmp/out", output_format="csv", include=("*.csv",))
    assert pipeline.steps == ()
    assert pipeline.output.format == "csv"
    assert pipeline.source.include == ("*.csv",)


def test_config_compressions_match_what_the_writers_support() -> None:
    from shared.config import COMPRESSIONS
    from shared.transform import writers as formats

    assert set(COMPRESSIONS) == set(formats.OUTPUT_FORMATS)
    assert set(COMPRESSIONS["parquet"]) == set(formats.PARQUET_COMPRESSIONS)
    assert set(COMPRESSIONS["csv"]) == set(COMPRESSIONS["jsonl"]) == set(formats.TEXT_COMPRESSIONS)


@pytest.mark.parametrize(
    "expression", ["rate(1 minute)", "rate(15 minutes)", "rate(2 days)", "cron(0 6 ? * MON-FRI *)"]
)
def test_schedule_expressions_eventbridge_accepts_load(tmp_path: Path, expression: str) -> None:
    path = write(tmp_path, GOOD.replace('"rate(1 hour)"', f'"{expression}"', 1))
    assert load_config(path).settings.schedule == expression


def test_allow_overrides_is_empty_by_default() -> None:
    pipeline = adhoc_pipeline(output_url="/tmp/x")
    assert pipeline.allow_overrides == ()


def test_alias_folder_ids_must_be_folder_ids(tmp_path: Path) -> None:
    body = {"pipelines": {"p": {"output": {"url": "/x"}, "source": {"folder_id": "A"}}}}
    body["pipelines"]["p"]["source"]["alias_folder_ids"] = ["B_2-c"]
    assert parse_config(body).pipelines["p"].source.alias_folder_ids == ("B_2-c",)
    body["pipelines"]["p"]["source"]["alias_folder_ids"] = ["../x"]
    with pytest.raises(ConfigError, match=r"source.alias_folder_ids.*'../x' is not a Drive"):
        parse_config(body)


def _custom(function: str, modules: list[str] | None = None) -> dict[str, object]:
    data: dict[str, object] = {
        "pipelines": {
            "p": {
                "steps": [{"op": "normalize_columns"}, {"op": "custom", "function": function}],
                "output": {"url": "/tmp/x"},
            }
        }
    }
    if modules is not None:
        data["settings"] = {"custom_step_modules": modules}
    return data


@pytest.mark.parametrize(
    ("function", "modules", "reason"),
    [
        (
            "my_pkg.steps:clean",
            None,
            "not under settings.custom_step_modules (which allows nothing)",
        ),
        ("other_pkg.steps:clean", ["my_pkg"], "(which allows my_pkg)"),
        ("team.stepsx:clean", ["team.steps"], "not under settings.custom_step_modules"),
        ("subprocess:run", ["my_pkg"], "'subprocess' is in the standard library"),
        ("os.system", None, "'os' is in the standard library"),
        ("builtins:exec", None, "standard library"),
        ("importlib:import_module", None, "standard library"),
        ("pickle:loads", None, "standard library"),
        ("shutil.rmtree", None, "standard library"),
        ("pandas:read_csv", None, "can run programs or touch files"),
        ("shared.storage:open_storage", None, "can run programs or touch files"),
    ],
)
def test_custom_steps_need_an_allowed_module(
    function: str, modules: list[str] | None, reason: str
) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(_custom(function, modules), source="f.toml")
    message = str(error.value)
    assert message.startswith(f"f.toml: pipelines.p.steps[1].custom.function: {function!r}")
    assert reason in message


def test_allowed_custom_modules_load_and_the_list_refuses_the_stdlib() -> None:
    for function in ("my_pkg:clean", "my_pkg.sub.mod:clean", "team.steps.x.clean"):
        parse_config(_custom(function, ["my_pkg", "team.steps"]))
    for module, reason in (
        ("os", "standard library"),
        ("subprocess.x", "standard library"),
        ("boto3", "run programs"),
        ("my pkg", "not a module name"),
    ):
        with pytest.raises(ConfigError, match=f"settings.custom_step_modules.*{reason}"):
            parse_config(_custom("my_pkg:clean", [module]))
