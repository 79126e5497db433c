"""The Lambda artifacts: vendoring, our layer, Lambda's size limits, Terraform output, IAM policy
files. The artifacts themselves are run in tests/aws/test_clean_runtime.py."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from deploy import package_aws
from deploy.layer import BOTO_SERVICES, LayerReport, runtime_incompatible
from deploy.package_aws import (
    BUDGET_BYTES,
    LAMBDA_UNZIPPED_LIMIT,
    MANAGED_LAYER_BYTES,
    MIB,
    OWN_LAYER_NAME,
    PackageError,
    PackageReport,
    check_layers,
    check_python,
    measure,
)

APP_DIR = package_aws.APP_DIR
STAGES = ("dev", "prod")


def _config() -> dict:
    return json.loads((APP_DIR / ".chalice" / "config.json").read_text())


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> PackageReport:
    out = tmp_path_factory.mktemp("aws") / "out"
    try:
        return package_aws.build("dev", out, "terraform")
    except PackageError as exc:
        if "Could not fetch URL" in str(exc) or "NewConnectionError" in str(exc):
            pytest.skip(f"PyPI unreachable; chalice package downloads Linux wheels: {exc}")
        raise


@pytest.mark.slow
def test_package_measures_both_artifacts_and_fits_the_budget(packaged: PackageReport) -> None:
    assert packaged.problems() == []
    assert packaged.layer is not None
    with zipfile.ZipFile(packaged.layer.zip_path) as archive:
        assert packaged.layer_bytes == sum(i.file_size for i in archive.infolist())
    assert packaged.total_bytes == packaged.unzipped_bytes + packaged.layer_bytes <= BUDGET_BYTES
    assert packaged.margin_bytes == LAMBDA_UNZIPPED_LIMIT - packaged.total_bytes >= 20 * MIB
    assert packaged.zipped_bytes < 50 * MIB
    print("\n".join(packaged.lines()))


@pytest.mark.slow
def test_package_holds_the_app_and_the_core_and_no_third_party_package(
    packaged: PackageReport,
) -> None:
    with zipfile.ZipFile(packaged.zip_path) as archive:
        names = set(archive.namelist())
    for needed in (
        "app.py",
        "chalice/app.py",
        "chalicelib/drivepipe.toml",
        "shared/triggers/service.py",
        "shared/triggers/events.py",
    ):
        assert needed in names, needed
    tops = {n.split("/", 1)[0] for n in names}
    assert tops == {"app.py", "chalice", "chalicelib", "shared"}, tops
    assert "shared/cli.py" in names  # the core CLI imports no local tooling, so it ships
    assert not any("__pycache__" in n for n in names)
    # The project was assembled in build/, never in chalice_app/: no vendored copy there can
    # shadow the working tree for `chalice local` (whose vendor/ would come first).
    assert not (APP_DIR / "vendor").exists()
    project = package_aws.project_dir(packaged.zip_path.parent)
    assert (project / "vendor" / "shared" / "__init__.py").is_file()
    deployed = project / ".chalice" / "deployed"
    assert deployed.is_symlink() and deployed.resolve() == (APP_DIR / ".chalice" / "deployed")


@pytest.mark.slow
def test_layer_is_stripped_and_holds_what_the_code_imports(packaged: PackageReport) -> None:
    assert packaged.layer is not None
    with zipfile.ZipFile(packaged.layer.zip_path) as archive:
        names = archive.namelist()
    assert all(n.startswith("python/") for n in names)
    for package in ("pandas", "numpy", "pyarrow", "openpyxl", "requests", "pydantic", "boto3"):
        assert f"python/{package}/__init__.py" in names, package
    assert "python/google/auth/__init__.py" in names
    assert not [n for n in names if "/tests/" in n or "__pycache__" in n or n.endswith(".pyi")]
    assert not [n for n in names if "flight" in n or "_orc" in n or "/include/" in n]
    services = {n.split("/")[3] for n in names if n.startswith("python/botocore/data/")}
    assert services - {n.split("/")[-1] for n in names} == set(BOTO_SERVICES)
    assert packaged.layer.stripped_bytes > 10 * MIB and packaged.layer.pruned_bytes > 50 * MIB


@pytest.mark.slow
def test_layer_loads_on_the_runtime_s_glibc(packaged: PackageReport, tmp_path: Path) -> None:
    assert packaged.layer is not None
    with zipfile.ZipFile(packaged.layer.zip_path) as archive:
        archive.extractall(tmp_path)
    assert runtime_incompatible(tmp_path / "python") == {}


@pytest.mark.slow
def test_terraform_wires_the_s3_event_layer_and_policy(packaged: PackageReport) -> None:
    stage = _config()["stages"]["dev"]
    tf = json.loads((packaged.zip_path.parent / "chalice.tf.json").read_text())
    resources = tf["resource"]
    notify = next(iter(resources["aws_s3_bucket_notification"].values()))
    assert notify["bucket"] == stage["environment_variables"]["DRIVEPIPE_INPUT_BUCKET"]
    assert notify["lambda_function"][0]["events"] == ["s3:ObjectCreated:*"]
    assert "filter_prefix" not in notify["lambda_function"][0]
    functions = resources["aws_lambda_function"]
    assert set(functions) == {
        "api_handler",
        "on_upload",
        "on_schedule",
        "fanout_worker",
        "fanout_dead_letter",
        "failed_events",
        "push_worker",  # the dev stage has push on
    }
    for name, function in functions.items():
        assert function["layers"] == stage["layers"]
        assert function["runtime"] == "python3.11"
        assert function["timeout"] == stage["lambda_functions"][name]["lambda_timeout"]
    mappings = resources["aws_lambda_event_source_mapping"].values()
    assert len(mappings) == 4  # work queue, its dead-letter queue, the failure, push queues
    assert all(m["function_response_types"] == ["ReportBatchItemFailures"] for m in mappings)
    swagger = json.loads(tf["locals"]["chalice_api_swagger"])
    assert swagger["securityDefinitions"]["sigv4"]["x-amazon-apigateway-authtype"] == "awsSigv4"
    operations = {
        (path, method): op for path, ops in swagger["paths"].items() for method, op in ops.items()
    }
    # POST /sync, GET /health, GET /runs, GET /runs/{run_id}, and with push the Drive webhook
    assert len(operations) == 5
    webhook = operations.pop(("/drive/notifications", "post"))
    assert "security" not in webhook  # public: checked by its channel token
    assert all(op["security"] == [{"sigv4": []}] for op in operations.values())  # IAM deployed
    rule = next(iter(resources["aws_cloudwatch_event_rule"].values()))
    assert rule["schedule_expression"] == "rate(1 hour)"
    assert rule["name"] == "drivepipe-dev-on_schedule"  # stage-qualified
    # One role per function, each with its own policy file.
    for name, role_policy in resources["aws_iam_role_policy"].items():
        function = name.removesuffix("_role")
        shipped = (APP_DIR / ".chalice" / f"policy-dev-{function}.json").read_text()
        assert json.loads(role_policy["policy"]) == json.loads(shipped), function


@pytest.mark.slow
def test_cloudformation_output_refuses_the_s3_trigger(tmp_path: Path) -> None:
    project = package_aws.assemble_project(tmp_path / "project")
    with pytest.raises(PackageError, match="on_s3_event"):
        package_aws.run_chalice_package("dev", tmp_path / "cfn", "cloudformation", project)


@pytest.mark.parametrize("stage", STAGES)
def test_stages_set_lambda_limits_and_our_layer(stage: str) -> None:
    config = _config()["stages"][stage]
    assert config["autogen_policy"] is False
    assert "iam_policy_file" not in config and "reserved_concurrency" not in config
    for function, settings in config["lambda_functions"].items():
        assert settings["iam_policy_file"] == f"policy-{stage}-{function}.json"
    assert config["lambda_timeout"] == 900
    (layer,) = config["layers"]
    assert f":layer:{OWN_LAYER_NAME}:" in layer
    (warning,) = check_layers(stage, "us-east-1")
    assert "is the placeholder: publish build/aws/layer.zip" in warning
    env = config["environment_variables"]
    assert not any("SERVICE_ACCOUNT" in k or "API_KEY" in k for k in env), "no secrets in config"


def test_the_function_zip_installs_no_requirements() -> None:
    lines = (APP_DIR / "requirements.txt").read_text().splitlines()
    assert [line for line in lines if line.strip() and not line.startswith("#")] == []


def _app_with_layers(tmp_path: Path, layers: list[str]) -> Path:
    (tmp_path / ".chalice").mkdir(parents=True)
    config = {"stages": {"dev": {"layers": layers}}}
    (tmp_path / ".chalice" / "config.json").write_text(json.dumps(config))
    return tmp_path


def test_a_layer_from_another_region_is_flagged(tmp_path: Path) -> None:
    ours = "arn:aws:lambda:us-east-1:444455556666:layer:drivepipe-python311:3"
    (warning,) = check_layers("dev", "ap-northeast-1", _app_with_layers(tmp_path, [ours]))
    assert "is in us-east-1 but you deploy to ap-northeast-1" in warning
    assert "publish build/aws/layer.zip in ap-northeast-1" in warning


def test_the_managed_layer_remains_an_option(tmp_path: Path) -> None:
    managed = "arn:aws:lambda:us-east-1:336392948345:layer:AWSSDKPandas-Python311:31"
    app = _app_with_layers(tmp_path, [managed])
    assert check_layers("dev", "us-east-1", app) == []
    assert package_aws.uses_managed_layer("dev", app)
    (warning,) = check_layers("dev", "ap-northeast-1", app)
    assert "AWSSDKPandas-Python311:31" in warning
    (missing,) = check_layers("dev", None, _app_with_layers(tmp_path / "none", []))
    assert "pandas, numpy and pyarrow would be missing" in missing


def test_only_the_layer_s_python_may_package() -> None:
    assert check_python((3, 11)) is None
    refused = check_python((3, 12))
    assert refused is not None and "Python 3.12" in refused and "python3.11" in refused


def test_package_aws_refuses_another_python(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(package_aws, "check_python", lambda: "this is Python 3.12")
    assert package_aws.main([]) == 1
    assert "this is Python 3.12" in capsys.readouterr().err
    with pytest.raises(PackageError, match=r"3\.12"):
        package_aws.build("dev")


def _zip(path: Path, members: dict[str, int]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, size in members.items():
            archive.writestr(name, "x" * size)
    return path


def test_measure_sums_members_and_flags_what_the_layer_provides(tmp_path: Path) -> None:
    path = _zip(
        tmp_path / "deployment.zip",
        {"app.py": 1000, "pandas/__init__.py": 3000, "pandas-2.2.0.dist-info/METADATA": 500},
    )
    layer = LayerReport(tmp_path / "layer.zip", 5, 10, {"pandas": 10})
    report = measure(path, layer)
    assert report.unzipped_bytes == 4500
    assert report.top_level == {"app": 1000, "pandas": 3500}
    assert report.total_bytes == 4510
    assert report.problems() == ["pandas is in deployment.zip although the layer provides it"]
    managed = measure(path)
    assert managed.layer_bytes == MANAGED_LAYER_BYTES and "cited" in managed.layer_source
    assert managed.problems() == ["pandas is in deployment.zip although the layer provides it"]


def test_over_the_230_mib_budget_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _zip(tmp_path / "deployment.zip", {"app.py": 100})
    under = measure(path, LayerReport(tmp_path / "l.zip", 1, BUDGET_BYTES - 100, {}))
    assert under.problems() == []
    over = measure(path, LayerReport(tmp_path / "l.zip", 1, BUDGET_BYTES - 99, {}))
    (problem,) = over.problems()
    assert "over the 230 MiB budget (Lambda's 250 MiB less a 20 MiB margin)" in problem
    assert over.margin_bytes < 20 * MIB
    monkeypatch.setattr(package_aws, "build", lambda *args, **kwargs: over)
    assert package_aws.main(["--stage", "dev", "--allow-placeholders"]) == 1
    captured = capsys.readouterr()
    assert "margin" in captured.out and "over the 230 MiB budget" in captured.err


def test_vendoring_copies_shared_without_caches_or_the_cli(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    (shared / "pkg" / "__pycache__").mkdir(parents=True)
    (shared / "__init__.py").write_text("")
    (shared / "cli.py").write_text("")
    (shared / "pkg" / "client.py").write_text("")
    (shared / "pkg" / "__pycache__" / "x.pyc").write_bytes(b"")
    app = tmp_path / "app"
    (app / "vendor" / "stale").mkdir(parents=True)
    target = package_aws.vendor_shared(app, shared)
    copied = sorted(str(p.relative_to(app)) for p in app.rglob("*") if p.is_file())
    assert target == app / "vendor" / "shared"
    assert copied == [
        "vendor/shared/__init__.py",
        "vendor/shared/cli.py",
        "vendor/shared/pkg/client.py",
    ]


def test_chalice_local_refuses_a_vendored_copy_that_would_shadow_the_tree(tmp_path: Path) -> None:
    from devstack.aws_dev import shadowing_copy

    assert shadowing_copy(tmp_path) is None
    (tmp_path / "vendor" / "shared").mkdir(parents=True)
    problem = shadowing_copy(tmp_path)
    assert problem is not None and "instead of the working tree" in problem
