"""Deployment pieces of fan-out: the Terraform patch, the SQS commands, the gcloud commands."""

from __future__ import annotations

import json
import shlex

from deploy import aws_stage, package_aws, terraform_aws
from deploy.package_gcp import (
    PUBSUB_AGENT,
    WORK_SUBSCRIPTION,
    DeployConfig,
    deploy_commands,
    setup_commands,
    teardown_commands,
)


def test_terraform_sqs_mappings_get_partial_batch_responses() -> None:
    tf = {
        "resource": {
            "aws_lambda_event_source_mapping": {
                "work": {"event_source_arn": "arn:aws:sqs:us-east-1:1:q", "batch_size": 5},
                "stream": {"event_source_arn": "arn:aws:kinesis:us-east-1:1:stream/s"},
            }
        }
    }
    assert terraform_aws.enable_partial_batch_responses(tf) == 1
    mappings = tf["resource"]["aws_lambda_event_source_mapping"]
    assert mappings["work"]["function_response_types"] == ["ReportBatchItemFailures"]
    assert "function_response_types" not in mappings["stream"]


def test_queue_commands_match_the_stage_and_its_policies() -> None:
    stage = aws_stage.load_stage("prod")
    text = "\n".join(aws_stage.setup_commands(stage) + aws_stage.after_deploy_commands(stage))
    attributes = {
        line.split("--queue-name ")[1].split()[0]: json.loads(line.split("'")[1])
        for line in text.splitlines()
        if "create-queue" in line
    }
    assert set(attributes) == {
        stage.work_queue,
        stage.dead_letter_queue,
        stage.failure_queue,
    }
    for queue, consumer in (
        (stage.work_queue, "fanout_worker"),
        (stage.dead_letter_queue, "fanout_dead_letter"),
        (stage.failure_queue, "failed_events"),
    ):  # AWS advises 6x the consumer's timeout; Lambda refuses a mapping under 1x
        assert int(attributes[queue]["VisibilityTimeout"]) >= 6 * stage.timeout(consumer)
    redrive = json.loads(attributes[stage.work_queue]["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == stage.queue_arn(stage.dead_letter_queue)
    assert text.count("--function-response-types ReportBatchItemFailures") == 3
    assert text.count("put-function-event-invoke-config") == 2
    send = json.loads(
        (package_aws.APP_DIR / ".chalice" / "policy-prod-api_handler.json").read_text()
    )
    by_sid = {s["Sid"]: s for s in send["Statement"]}
    assert by_sid["SendWorkItems"]["Resource"] == [stage.queue_arn(stage.work_queue)]


def cfg(**changes: object) -> DeployConfig:
    base: dict[str, object] = {
        "project": "acme",
        "region": "europe-west1",
        "input_bucket": "acme-in",
        "output_bucket": "acme-out",
    }
    return DeployConfig(**{**base, **changes})  # type: ignore[arg-type]


def test_gcp_fanout_is_opt_in_and_wires_topic_worker_and_dead_letters() -> None:
    plain = cfg()
    assert not any("fanout" in " ".join(c.argv) for c in deploy_commands(plain))
    config = cfg(fanout=True, fanout_max_instances=3)
    commands = setup_commands(config) + deploy_commands(config)
    deployed = {
        c.argv[3]: c.argv for c in commands if c.argv[:3] == ("gcloud", "functions", "deploy")
    }
    worker = deployed["drivepipe-work"]
    assert "--entry-point=fanout_worker" in worker and "--retry" in worker
    assert "--trigger-topic=drivepipe-work" in worker
    assert [w for w in worker if w.startswith("--max-instances=")] == ["--max-instances=3"]
    assert "--trigger-topic=drivepipe-work-dead" in deployed["drivepipe-dead-letter"]
    env_flag = next(w for w in deployed["drivepipe-sync"] if w.startswith("--set-env-vars="))
    assert "DRIVEPIPE_FANOUT_TOPIC=projects/acme/topics/drivepipe-work" in env_flag
    update = next(
        c for c in commands if c.argv[:4] == ("gcloud", "pubsub", "subscriptions", "update")
    )
    assert WORK_SUBSCRIPTION in update.argv
    assert "--max-delivery-attempts=5" in update.argv
    printed = update.shell()
    assert "gcloud eventarc triggers describe" in printed and WORK_SUBSCRIPTION not in printed
    assert shlex.split(printed)[4].startswith("$(gcloud eventarc")  # one quoted word
    grant = next(c for c in commands if PUBSUB_AGENT in " ".join(c.argv))
    assert "gcp-sa-pubsub.iam.gserviceaccount.com" in grant.shell()
    deleted = [c.argv[3] for c in teardown_commands(config) if c.argv[2] == "delete"]
    assert {"drivepipe-work", "drivepipe-dead-letter"} <= set(deleted)
