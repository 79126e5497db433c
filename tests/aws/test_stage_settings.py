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


def statements_of(function: str, qa: AwsStage) -> dict[str, dict[str, object]]:
    return {s["Sid"]: s for s in aws_policy.function_policy(function, qa)["Statement"]}


def test_push_is_opt_in_and_brings_its_worker_queue_grants_and_environment() -> None:
    off = stage()
    assert "push_worker" not in aws_policy.functions(off)
    assert not any(k.startswith("DRIVEPIPE_PUSH") for k in off.environment())
    for function in aws_policy.functions(off):
        text = json.dumps(aws_policy.function_policy(function, off))
        assert "drivepipe-push-qa" not in text and "channels" not in text, function

    on = stage(push=True)
    assert "push_worker" in aws_policy.functions(on)
    assert "push_worker" in on.chalice_stage()["lambda_functions"]
    env = on.environment()
    assert env["DRIVEPIPE_PUSH"] == "true" and env["DRIVEPIPE_PUSH_QUEUE"] == "drivepipe-push-qa"
    assert env["DRIVEPIPE_CHANNEL_SECRETS"] == "aws-sm:drivepipe/qa/channels"
    assert "DRIVEPIPE_PUSH_ADDRESS" not in env  # known after the first deploy
    queue = "arn:aws:sqs:eu-west-1:444455556666:drivepipe-push-qa"
    tokens = "arn:aws:secretsmanager:eu-west-1:444455556666:secret:drivepipe/qa/channels/*"
    assert statements_of("push_worker", on)["ConsumePushSyncs"]["Resource"] == [queue]
    assert statements_of("api_handler", on)["ReadChannelTokens"]["Action"] == [
        "secretsmanager:GetSecretValue"
    ]
    manage = statements_of("on_schedule", on)["ManageChannelTokens"]
    assert manage["Resource"] == [tokens]
    assert manage["Action"] == ["secretsmanager:CreateSecret", "secretsmanager:DeleteSecret"]
    for function in aws_policy.functions(on):  # everything that syncs may hand one more off
        sids = statements_of(function, on)
        assert ("SendPushSyncs" in sids) == (function != "failed_events"), function
        assert ("ReadChannelTokens" in sids) == (function == "api_handler"), function
        assert ("ManageChannelTokens" in sids) == (function == "on_schedule"), function

    address = "https://abc123.execute-api.eu-west-1.amazonaws.com/api/drive/notifications"
    assert stage(push=True, push_address=address).environment()["DRIVEPIPE_PUSH_ADDRESS"] == address
    for bad in ("http://abc123.example/api/drive/notifications", "https://abc123.example/api/"):
        with pytest.raises(StageError, match=r"stages\.qa\.push_address"):
            stage(push=True, push_address=bad)


def test_notifications_reach_the_alerts_topic_and_optionally_the_webhook_secret() -> None:
    topic = "arn:aws:sns:eu-west-1:444455556666:drivepipe-alerts-qa"
    webhook = "arn:aws:secretsmanager:eu-west-1:444455556666:secret:drivepipe/qa/webhook"
    qa = stage()
    assert qa.environment()["DRIVEPIPE_NOTIFY_SNS_TOPIC"] == topic
    assert "DRIVEPIPE_NOTIFY_WEBHOOK_SECRET" not in qa.environment()
    for function in aws_policy.functions(qa):  # every function finishes runs of some kind
        sids = statements_of(function, qa)
        assert sids["PublishRunNotifications"]["Resource"] == [topic], function
        assert "ReadNotificationWebhook" not in sids, function
    hooked = stage(notify_webhook=True)
    assert hooked.environment()["DRIVEPIPE_NOTIFY_WEBHOOK_SECRET"] == webhook
    for function in aws_policy.functions(hooked):
        read = statements_of(function, hooked)["ReadNotificationWebhook"]
        assert read["Resource"] == [webhook + "-??????"], function
    quiet = stage(notify_sns=False)
    assert "DRIVEPIPE_NOTIFY_SNS_TOPIC" not in quiet.environment()
    for function in aws_policy.functions(quiet):
        assert "sns:" not in json.dumps(aws_policy.function_policy(function, quiet)), function


def test_commands_create_the_push_queue_topic_and_secret_and_say_what_is_left() -> None:
    qa = stage(push=True, notify_webhook=True)
    setup = aws_stage.setup_commands(qa)
    creates = {
        line.split("--queue-name ")[1].split()[0]: json.loads(line.split("'")[1])
        for line in setup
        if "create-queue" in line
    }
    push = creates["drivepipe-push-qa"]
    assert int(push["VisibilityTimeout"]) >= 6 * qa.timeout("push_worker")
    redrive = json.loads(push["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"].endswith(":drivepipe-push-qa-dlq")
    names = list(creates)
    assert names.index("drivepipe-push-qa-dlq") < names.index("drivepipe-push-qa")
    assert any("sns create-topic --region eu-west-1 --name drivepipe-alerts-qa" in x for x in setup)
    assert any("create-secret --region eu-west-1 --name drivepipe/qa/webhook" in x for x in setup)
    after = "\n".join(aws_stage.after_deploy_commands(qa))
    assert "--function-name drivepipe-qa-push_worker" in after  # partial batch responses
    assert "/aws/lambda/drivepipe-qa-push_worker" in after  # log retention
    assert qa.notes() and "--push-address" in qa.notes()[0]
    address = "https://abc123.execute-api.eu-west-1.amazonaws.com/api/drive/notifications"
    assert stage(push=True, push_address=address).notes() == []


def test_the_shipped_stages_try_push_in_dev_and_keep_prod_without_it() -> None:
    dev, prod = aws_stage.load_stage("dev"), aws_stage.load_stage("prod")
    assert dev.push and not prod.push
    assert dev.notify_sns and prod.notify_sns and not (dev.notify_webhook or prod.notify_webhook)
    config = json.loads((package_aws.APP_DIR / ".chalice" / "config.json").read_text())
    assert "push_worker" in config["stages"]["dev"]["lambda_functions"]
    assert "push_worker" not in config["stages"]["prod"]["lambda_functions"]
    assert "DRIVEPIPE_PUSH_QUEUE" not in config["stages"]["prod"]["environment_variables"]
