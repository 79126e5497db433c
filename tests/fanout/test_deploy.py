"""Deployment pieces of fan-out: the Terraform patch, the SQS commands, the gcloud commands."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from deploy import package_aws
from deploy.package_gcp import (
    PUBSUB_AGENT,
    WORK_SUBSCRIPTION,
    DeployConfig,
    deploy_commands,
    setup_commands,
    teardown_commands,
)


def test_terraform_sqs_mappings_get_partial_batch_responses(tmp_path: Path) -> None:
    tf = {
        "resource": {
            "aws_lambda_event_source_mapping": {
                "work": {"event_source_arn": "arn:aws:sqs:us-east-1:1:q", "batch_size": 5},
                "stream": {"event_source_arn": "arn:aws:kinesis:us-east-1:1:stream/s"},
            }
        }
    }
    path = tmp_path / "chalice.tf.json"
    path.write_text(json.dumps(tf))
    assert package_aws.enable_partial_batch_responses(path) == 1
    mappings = json.loads(path.read_text())["resource"]["aws_lambda_event_source_mapping"]
    assert mappings["work"]["function_response_types"] == ["ReportBatchItemFailures"]
    assert "function_response_types" not in mappings["stream"]


def test_sqs_commands_match_the_stage_and_its_policy() -> None:
    commands = package_aws.sqs_commands("prod")
    config = json.loads((package_aws.APP_DIR / ".chalice" / "config.json").read_text())
    stage = config["stages"]["prod"]
    env = stage["environment_variables"]
    text = "\n".join(commands)
    assert f"--queue-name {env['DRIVEPIPE_FANOUT_DLQ']}" in text
    assert f"--queue-name {env['DRIVEPIPE_FANOUT_QUEUE']} " in text
    attributes = json.loads(text.split("<<JSON\n", 1)[1].split("\nJSON", 1)[0])
    worker_timeout = stage["lambda_functions"]["fanout_worker"]["lambda_timeout"]
    assert int(attributes["VisibilityTimeout"]) >= 6 * worker_timeout
    redrive = json.loads(attributes["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"].endswith(":" + env["DRIVEPIPE_FANOUT_DLQ"])
    assert "--function-response-types ReportBatchItemFailures" in text
    policy = json.loads((package_aws.APP_DIR / ".chalice" / "policy-prod.json").read_text())
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert all(
        r.endswith(env["DRIVEPIPE_FANOUT_QUEUE"]) for r in by_sid["SendWorkItems"]["Resource"]
    )
    consume = by_sid["ConsumeWorkItems"]["Resource"]
    assert {r.rsplit(":", 1)[1] for r in consume} == {
        env["DRIVEPIPE_FANOUT_QUEUE"],
        env["DRIVEPIPE_FANOUT_DLQ"],
    }


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
