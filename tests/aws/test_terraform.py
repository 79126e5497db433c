"""Chalice's Terraform output, rewritten by deploy/terraform_aws.py, against current Terraform
and AWS provider 5.

Where a ``terraform`` binary and a local mirror of ``hashicorp/aws`` 5.x are installed (this
machine kind has Terraform 1.11.4 and provider 5.100.0 under /opt/tf-plugins), ``terraform init``
and ``terraform validate`` run offline on the output: Chalice's own output is refused by
``init`` (it pins Terraform < 1.4.0), ours validates with no error and no warning. Elsewhere
those two tests skip, saying why; the rewrite itself is checked everywhere.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from deploy import aws_stage, package_aws, terraform_aws

MIRROR = Path(os.environ.get("DRIVEPIPE_TF_PLUGIN_MIRROR", "/opt/tf-plugins"))
TERRAFORM = shutil.which("terraform")
needs_terraform = pytest.mark.skipif(
    TERRAFORM is None or not (MIRROR / "registry.terraform.io" / "hashicorp" / "aws").is_dir(),
    reason="no terraform binary, or no hashicorp/aws mirror in $DRIVEPIPE_TF_PLUGIN_MIRROR "
    "(terraform init cannot download providers offline)",
)


@pytest.fixture(scope="module")
def chalice_output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``chalice package --pkg-format terraform`` for the dev stage, not yet rewritten."""
    root = tmp_path_factory.mktemp("tf")
    project = package_aws.assemble_project(root / "project")
    package_aws.run_chalice_package("dev", root / "out", "terraform", project)
    return root / "out"


def rewritten(chalice_output: Path, into: Path) -> Path:
    shutil.copytree(chalice_output, into)
    terraform_aws.postprocess(into / "chalice.tf.json", aws_stage.load_stage("dev"))
    return into


def terraform(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    rc = workdir.parent / f"{workdir.name}.tfrc"
    rc.write_text(
        f'provider_installation {{\n  filesystem_mirror {{\n    path = "{MIRROR}"\n  }}\n}}\n'
    )
    env = {**os.environ, "TF_CLI_CONFIG_FILE": str(rc), "CHECKPOINT_DISABLE": "1"}
    env["TF_IN_AUTOMATION"] = "1"
    return subprocess.run(
        [str(TERRAFORM), *args, "-no-color"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
@needs_terraform
def test_chalice_s_own_output_is_refused_by_current_terraform(chalice_output: Path) -> None:
    done = terraform(chalice_output, "init", "-backend=false", "-input=false")
    assert done.returncode != 0
    assert "Unsupported Terraform Core version" in done.stderr + done.stdout


@pytest.mark.slow
@needs_terraform
def test_the_rewritten_output_validates_with_provider_5(
    chalice_output: Path, tmp_path: Path
) -> None:
    workdir = rewritten(chalice_output, tmp_path / "tf")
    init = terraform(workdir, "init", "-backend=false", "-input=false")
    assert init.returncode == 0, init.stdout + init.stderr
    lock = (workdir / ".terraform.lock.hcl").read_text()
    assert 'provider "registry.terraform.io/hashicorp/aws"' in lock and 'version     = "5.' in lock
    validate = terraform(workdir, "validate", "-json")
    result = json.loads(validate.stdout)
    assert result["valid"] is True, result
    assert result["warning_count"] == 0, result["diagnostics"]


@pytest.mark.slow
def test_the_rewrite_adds_what_loses_no_event(chalice_output: Path, tmp_path: Path) -> None:
    stage = aws_stage.load_stage("dev")
    tf = json.loads((rewritten(chalice_output, tmp_path / "tf") / "chalice.tf.json").read_text())
    assert tf["terraform"]["required_providers"] == {"aws": terraform_aws.AWS_PROVIDER}
    assert "null_data_source" not in tf.get("data", {})
    resources = tf["resource"]
    assert set(resources["aws_lambda_function_event_invoke_config"]) == {"on_upload", "on_schedule"}
    for config in resources["aws_lambda_function_event_invoke_config"].values():
        assert config["destination_config"]["on_failure"]["destination"] == (
            "${aws_sqs_queue.failure_queue.arn}"
        )
    queues = resources["aws_sqs_queue"]
    assert stage.push  # the dev stage ships with push on: its queue and worker are in
    assert {q["name"] for q in queues.values()} == {
        stage.work_queue,
        stage.dead_letter_queue,
        stage.failure_queue,
        stage.push_queue,
        stage.push_dead_letter_queue,
    }
    assert queues["work_queue"]["visibility_timeout_seconds"] == 6 * stage.timeout("fanout_worker")
    assert queues["dead_letter_queue"]["visibility_timeout_seconds"] >= 6 * 60
    assert queues["push_queue"]["visibility_timeout_seconds"] == 6 * stage.timeout("push_worker")
    assert "push_dead_letter_queue.arn" in queues["push_queue"]["redrive_policy"]
    mappings = resources["aws_lambda_event_source_mapping"].values()
    consumed = set(queues) - {"push_dead_letter_queue"}  # kept for inspection, not consumed
    assert {m["event_source_arn"] for m in mappings} == {
        f"${{aws_sqs_queue.{k}.arn}}" for k in consumed
    }
    assert resources["aws_sns_topic"] == {"alerts_topic": {"name": stage.alerts_topic}}
    push_worker = resources["aws_lambda_function"]["push_worker"]
    assert push_worker["environment"]["variables"]["DRIVEPIPE_PUSH_QUEUE"] == stage.push_queue
    assert all(m["function_response_types"] == ["ReportBatchItemFailures"] for m in mappings)
    (rule,) = resources["aws_cloudwatch_event_rule"].values()
    assert rule["name"] == "drivepipe-dev-on_schedule"
    for key, function in resources["aws_lambda_function"].items():
        group = resources["aws_cloudwatch_log_group"][key]
        assert group["name"] == f"/aws/lambda/{function['function_name']}"
        assert group["retention_in_days"] == stage.log_retention_days
    assert "stage_name" not in next(iter(resources["aws_api_gateway_deployment"].values()))
    assert tf["output"]["EndpointURL"]["value"].startswith("${aws_api_gateway_stage.")
