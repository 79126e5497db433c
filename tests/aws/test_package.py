"""The Lambda package: vendoring, Lambda's size limits, Terraform output, IAM policy files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from deploy import package_aws
from deploy.package_aws import (
    LAMBDA_UNZIPPED_LIMIT,
    LAYER_UNZIPPED_BYTES,
    MIB,
    PackageError,
    PackageReport,
    check_layers,
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
def test_package_fits_lambda_with_the_pandas_layer(packaged: PackageReport) -> None:
    assert packaged.problems() == []
    assert packaged.layer_bytes == LAYER_UNZIPPED_BYTES
    assert packaged.unzipped_bytes + LAYER_UNZIPPED_BYTES < LAMBDA_UNZIPPED_LIMIT
    assert packaged.zipped_bytes < 50 * MIB
    print("\n".join(packaged.lines()))


@pytest.mark.slow
def test_package_holds_the_app_the_core_and_only_what_the_layer_lacks(
    packaged: PackageReport,
) -> None:
    with zipfile.ZipFile(packaged.zip_path) as archive:
        names = set(archive.namelist())
    for needed in (
        "app.py",
        "chalicelib/drivepipe.toml",
        "shared/triggers/service.py",
        "shared/triggers/events.py",
        "pydantic/__init__.py",
        "google/auth/__init__.py",
    ):
        assert needed in names, needed
    for top in ("pandas", "numpy", "pyarrow", "boto3", "botocore", "devstack", "tests"):
        assert not any(n.startswith(f"{top}/") for n in names), top
    assert "shared/cli.py" in names  # the core CLI imports no local tooling, so it ships
    assert not any("__pycache__" in n for n in names)


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
    }
    for name, function in functions.items():
        assert function["layers"] == stage["layers"]
        assert function["runtime"] == "python3.11"
        assert function["timeout"] == stage["lambda_functions"][name]["lambda_timeout"]
    mappings = resources["aws_lambda_event_source_mapping"].values()
    assert len(mappings) == 2  # work queue + dead-letter queue
    assert all(m["function_response_types"] == ["ReportBatchItemFailures"] for m in mappings)
    swagger = json.loads(tf["locals"]["chalice_api_swagger"])
    assert swagger["securityDefinitions"]["sigv4"]["x-amazon-apigateway-authtype"] == "awsSigv4"
    operations = [op for path in swagger["paths"].values() for op in path.values()]
    assert len(operations) == 3
    assert all(op["security"] == [{"sigv4": []}] for op in operations)  # IAM auth deployed
    rule = next(iter(resources["aws_cloudwatch_event_rule"].values()))
    assert rule["schedule_expression"] == "rate(1 hour)"
    policy = next(iter(resources["aws_iam_role_policy"].values()))["policy"]
    shipped = json.loads((APP_DIR / ".chalice" / "policy-dev.json").read_text())
    assert json.loads(policy) == shipped


@pytest.mark.slow
def test_cloudformation_output_refuses_the_s3_trigger(tmp_path: Path) -> None:
    with package_aws.build_lock(), pytest.raises(PackageError, match="on_s3_event"):
        package_aws.vendor_shared()
        package_aws.run_chalice_package("dev", tmp_path / "cfn", "cloudformation")


@pytest.mark.parametrize("stage", STAGES)
def test_policy_grants_exactly_the_stage_buckets_and_secret(stage: str) -> None:
    env = _config()["stages"][stage]["environment_variables"]
    policy = json.loads((APP_DIR / ".chalice" / f"policy-{stage}.json").read_text())
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    buckets = {env["DRIVEPIPE_INPUT_BUCKET"], env["DRIVEPIPE_OUTPUT_BUCKET"]}
    assert set(by_sid["ListPipelineBuckets"]["Resource"]) == {f"arn:aws:s3:::{b}" for b in buckets}
    assert set(by_sid["ReadWritePipelineObjects"]["Resource"]) == {
        f"arn:aws:s3:::{b}/*" for b in buckets
    }
    secret = by_sid["ReadDriveCredentials"]
    assert secret["Action"] == ["secretsmanager:GetSecretValue"]
    assert secret["Resource"] == env["DRIVE_SECRET_ARN"] + "-??????"
    for statement in policy["Statement"]:
        actions = statement["Action"]
        assert not any(a.endswith("*") for a in actions), statement
        if statement["Sid"] != "Logs":
            assert "*" not in json.dumps(statement["Resource"]).replace("/*", ""), statement


@pytest.mark.parametrize("stage", STAGES)
def test_stages_set_lambda_limits_and_the_layer(stage: str) -> None:
    config = _config()["stages"][stage]
    assert config["autogen_policy"] is False
    assert config["iam_policy_file"] == f"policy-{stage}.json"
    assert config["lambda_timeout"] == 900
    assert check_layers(stage, "us-east-1") == []
    env = config["environment_variables"]
    assert not any("SERVICE_ACCOUNT" in k or "API_KEY" in k for k in env), "no secrets in config"


def test_a_layer_from_another_region_is_flagged() -> None:
    (warning,) = check_layers("dev", "ap-northeast-1")
    assert "is in us-east-1 but you deploy to ap-northeast-1" in warning
    assert "AWSSDKPandas-Python311:31" in warning


def test_measure_sums_members_and_flags_what_the_layer_provides(tmp_path: Path) -> None:
    path = tmp_path / "deployment.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("app.py", "x" * 1000)
        archive.writestr("pandas/__init__.py", "y" * 3000)
        archive.writestr("pandas-2.2.0.dist-info/METADATA", "z" * 500)
    report = measure(path, layer_bytes=10)
    assert report.unzipped_bytes == 4500
    assert report.top_level == {"app": 1000, "pandas": 3500}
    assert report.total_bytes == 4510
    assert report.problems() == ["pandas is in the zip although the layer/runtime provides it"]
    too_big = measure(path, layer_bytes=LAMBDA_UNZIPPED_LIMIT)
    assert any("over Lambda's" in p for p in too_big.problems())


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


@pytest.mark.slow
def test_the_unzipped_package_imports_with_its_vendored_core(
    packaged: PackageReport, tmp_path: Path
) -> None:
    """As Lambda does from /var/task: app.py and the vendored shared/ from the zip itself
    (pandas and boto3 come from this venv, standing in for the layer and the runtime)."""
    root = tmp_path / "task"
    with zipfile.ZipFile(packaged.zip_path) as archive:
        archive.extractall(root)
    env = dict(_config()["stages"]["dev"]["environment_variables"])
    env.update(
        PATH=os.environ.get("PATH", ""), PYTHONPATH=str(root), AWS_DEFAULT_REGION="us-east-1"
    )
    probe = "import app, shared; print(shared.__file__); print(sorted(app.app.handler_map))"
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    shared_file, handlers = done.stdout.strip().splitlines()
    assert Path(shared_file).is_relative_to(root)
    assert handlers == str(
        [
            "fanout_dead_letter",
            "fanout_worker",
            "get_run",
            "health",
            "on_schedule",
            "on_upload",
            "sync_http",
        ]
    )
