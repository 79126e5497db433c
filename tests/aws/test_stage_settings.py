"""A stage's account, region and names are set once (deploy/aws-stages.json); the Chalice
config, the per-function policies and the deploy commands follow from them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deploy import aws_policy, aws_stage, package_aws
from deploy.aws_stage import AwsStage, StageError


def stage(**changes: object) -> AwsStage:
    base: dict[str, object] = {
        "name": "qa",
        "account": "444455556666",
        "region": "eu-west-1",
        "input_bucket": "acme-in",
        "output_bucket": "acme-out",
        "drive_folder_id": "1AbC",
    }
    return AwsStage(**{**base, **changes})  # type: ignore[arg-type]


def test_the_shipped_generated_files_are_current() -> None:
    assert aws_stage.stale_files() == []


def test_every_arn_follows_the_region_and_account() -> None:
    qa = stage()
    env = qa.environment()
    assert (
        env["DRIVE_SECRET_ARN"]
        == "arn:aws:secretsmanager:eu-west-1:444455556666:secret:drivepipe/qa/drive"
    )
    assert qa.layer_arn == "arn:aws:lambda:eu-west-1:444455556666:layer:drivepipe-python311:1"
    for function in aws_policy.functions(qa):
        text = json.dumps(aws_policy.function_policy(function, qa))
        assert "us-east-1" not in text and "111122223333" not in text, function
        assert "arn:aws:logs:eu-west-1:444455556666:log-group:/aws/lambda/drivepipe-qa" in text
    assert qa.chalice_stage()["layers"] == [qa.layer_arn]


def test_buckets_outside_us_east_1_get_a_location_constraint() -> None:
    lines = aws_stage.setup_commands(stage())
    creates = [line for line in lines if "create-bucket" in line]
    assert len(creates) == 2
    assert all("LocationConstraint=eu-west-1" in line for line in creates)
    east = aws_stage.setup_commands(stage(region="us-east-1"))
    assert not any("LocationConstraint" in line for line in east)  # refused in us-east-1


def test_bad_settings_name_the_field() -> None:
    with pytest.raises(StageError, match=r"stages\.qa\.account"):
        stage(account="1234")
    with pytest.raises(StageError, match="input and output bucket must differ"):
        stage(output_bucket="acme-in")
    with pytest.raises(StageError, match="reserved_concurrency"):
        stage(reserved_concurrency={"nope": 1})


def test_placeholders_and_another_region_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    problems = package_aws.deploy_problems("dev", "eu-west-1", allow_placeholders=False)
    text = "\n".join(problems)
    assert "you deploy to eu-west-1 but stage 'dev' is set up for us-east-1" in text
    assert "DRIVE_FOLDER_ID=REPLACE_WITH_DRIVE_FOLDER_ID" in text
    assert "account is the placeholder" in text
    measured = package_aws.deploy_problems("dev", None, allow_placeholders=True)
    assert measured == []


def test_reserved_concurrency_is_per_function(tmp_path: Path) -> None:
    prod = aws_stage.load_stage("prod")
    block = prod.chalice_stage()
    assert "reserved_concurrency" not in block
    reserved = {
        f: c["reserved_concurrency"]
        for f, c in block["lambda_functions"].items()
        if "reserved_concurrency" in c
    }
    assert reserved == prod.reserved_concurrency == {"on_upload": 10}


def test_set_then_generate_writes_config_and_policies(tmp_path: Path) -> None:
    settings = tmp_path / "aws-stages.json"
    chalice = tmp_path / ".chalice"
    chalice.mkdir()
    (chalice / "config.json").write_text(json.dumps({"stages": {"local": {"x": 1}}}))
    aws_stage.save_stage(stage(), settings)
    changed = aws_stage.generate(chalice, settings)
    assert "config.json" in changed and "policy-qa-on_upload.json" in changed
    config = json.loads((chalice / "config.json").read_text())
    assert set(config["stages"]) == {"qa", "local"}
    assert aws_stage.stale_files(chalice, settings) == []
    aws_stage.save_stage(stage(region="ap-southeast-2"), settings)
    assert "config.json" in aws_stage.stale_files(chalice, settings)
