"""Make Chalice's Terraform output (``chalice package --pkg-format terraform``) deployable.

Chalice 1.34 writes a ``chalice.tf.json`` that pins Terraform ``< 1.4.0`` and the AWS provider
``< 5`` and leaves out what drivepipe needs to lose no event. :func:`postprocess` rewrites it
in place:

- **Versions:** Terraform ``>= 1.3`` and ``hashicorp/aws ~> 5.0``; the ``null`` provider's
  deprecated ``null_data_source`` (only app/stage labels) is dropped, so the AWS provider is the
  one plugin ``terraform init`` needs.
- **API Gateway:** ``aws_api_gateway_deployment.stage_name`` and its ``invoke_url`` are
  deprecated in provider 5 (and gone in 6): the stage becomes an ``aws_api_gateway_stage``, the
  deployment is replaced when the API's definition changes (``triggers``), and ``EndpointURL``
  is the stage's ``invoke_url``.
- **Log groups:** Chalice's ``log_retention_in_days`` makes its Terraform packager fail
  (``UnsupportedFeatureError: LogGroup``), and the resource it would write is named after
  itself (``api_handler-log-group``), not ``/aws/lambda/<function>``. So retention is not a
  Chalice setting here: each function gets ``aws_cloudwatch_log_group`` ``/aws/lambda/<name>``
  with the stage's ``log_retention_days`` and ``depends_on`` it (``chalice deploy`` users run
  the ``aws logs put-retention-policy`` commands of ``deploy.aws_stage commands
  --after-deploy``).
- **EventBridge:** the rule ``on_schedule-event`` becomes ``<app>-<stage>-on_schedule``, so two
  stages in one account do not share (and overwrite) one rule.
- **No silent loss:** the SQS queues (work queue, its DLQ, the failure queue, and with push the
  push queue and its DLQ) are created with a visibility timeout of 6x their consumer's timeout,
  each SQS event source mapping reports partial batch failures, and ``on_upload`` /
  ``on_schedule`` get ``aws_lambda_function_event_invoke_config`` with the failure queue as
  on-failure destination.
- **Run notifications:** the stage's alerts topic (``aws_sns_topic``) when ``notify_sns`` is on;
  subscribing to it (e-mail...) stays yours. The webhook secret is not created here: its value
  (a URL that is its own credential) has no place in Terraform state.

``tests/aws/test_terraform.py`` runs ``terraform validate`` on the result where a Terraform
binary and an AWS provider 5 mirror are installed, and checks the rewrite itself everywhere.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from deploy.aws_commands import RETENTION_SECONDS, VISIBILITY_FACTOR, queues
from deploy.aws_stage import AwsStage

TERRAFORM_VERSION = ">= 1.3.0"
AWS_PROVIDER = {"source": "hashicorp/aws", "version": "~> 5.0"}
PARTIAL_BATCH = ["ReportBatchItemFailures"]
ASYNC_FUNCTIONS = ("on_upload", "on_schedule")


def enable_partial_batch_responses(tf: dict[str, Any]) -> int:
    """Make SQS event source mappings honour ``batchItemFailures``; returns how many changed.

    Without it Lambda ignores the handlers' partial batch response and deletes the whole batch
    on success, so a failed item would be lost instead of redelivered.
    """
    mappings = tf.get("resource", {}).get("aws_lambda_event_source_mapping", {})
    changed = 0
    for mapping in mappings.values():
        source = json.dumps(mapping.get("event_source_arn", ""))
        if ":sqs:" in source or "aws_sqs_queue." in source:
            mapping["function_response_types"] = PARTIAL_BATCH
            changed += 1
    return changed


def _versions(tf: dict[str, Any]) -> None:
    tf["terraform"] = {"required_version": TERRAFORM_VERSION, "required_providers": {}}
    tf["terraform"]["required_providers"]["aws"] = AWS_PROVIDER
    data = tf.get("data", {})
    data.pop("null_data_source", None)


def _api_stage(resources: dict[str, Any], tf: dict[str, Any]) -> None:
    deployments = resources.get("aws_api_gateway_deployment", {})
    for name, deployment in deployments.items():
        stage_name = deployment.pop("stage_name", "api")
        deployment.pop("stage_description", None)
        deployment["triggers"] = {"redeployment": "${md5(local.chalice_api_swagger)}"}
        resources.setdefault("aws_api_gateway_stage", {})[name] = {
            "stage_name": stage_name,
            "rest_api_id": deployment["rest_api_id"],
            "deployment_id": f"${{aws_api_gateway_deployment.{name}.id}}",
        }
        endpoint = tf.get("output", {}).get("EndpointURL")
        if endpoint is not None:
            endpoint["value"] = f"${{aws_api_gateway_stage.{name}.invoke_url}}"


def _log_groups(resources: dict[str, Any], stage: AwsStage) -> None:
    groups = resources.setdefault("aws_cloudwatch_log_group", {})
    for key, function in resources.get("aws_lambda_function", {}).items():
        groups[key] = {
            "name": f"/aws/lambda/{function['function_name']}",
            "retention_in_days": stage.log_retention_days,
        }
        function["depends_on"] = [f"aws_cloudwatch_log_group.{key}"]


def _rules(resources: dict[str, Any], stage: AwsStage) -> None:
    for key, rule in resources.get("aws_cloudwatch_event_rule", {}).items():
        function = key.removesuffix("-event")
        rule["name"] = stage.function_name(function)
        rule.setdefault("description", "")
        if not rule["description"]:
            rule["description"] = f"drivepipe {stage.name}: {function}"


def _queue_keys(stage: AwsStage) -> dict[str, str]:
    """Queue name -> its Terraform resource key."""
    return {
        stage.failure_queue: "failure_queue",
        stage.dead_letter_queue: "dead_letter_queue",
        stage.work_queue: "work_queue",
        stage.push_dead_letter_queue: "push_dead_letter_queue",
        stage.push_queue: "push_queue",
    }


def _queues(resources: dict[str, Any], stage: AwsStage) -> None:
    found = resources.setdefault("aws_sqs_queue", {})
    keys = _queue_keys(stage)
    for name, consumer, redrive in queues(stage):
        queue: dict[str, Any] = {
            "name": name,
            "visibility_timeout_seconds": VISIBILITY_FACTOR * stage.timeout(consumer),
            "message_retention_seconds": RETENTION_SECONDS,
        }
        if redrive:
            target = f"${{aws_sqs_queue.{keys[redrive]}.arn}}"
            queue["redrive_policy"] = (
                f'${{jsonencode({{deadLetterTargetArn = "{target}", maxReceiveCount = 5}})}}'
            )
        found[keys[name]] = queue
    by_name = {q["name"]: key for key, q in found.items()}
    for mapping in resources.get("aws_lambda_event_source_mapping", {}).values():
        name = str(mapping.get("event_source_arn", "")).rsplit(":", 1)[-1]
        if name in by_name:
            mapping["event_source_arn"] = f"${{aws_sqs_queue.{by_name[name]}.arn}}"


def _topics(resources: dict[str, Any], stage: AwsStage) -> None:
    if stage.notify_sns:
        topics = resources.setdefault("aws_sns_topic", {})
        topics["alerts_topic"] = {"name": stage.alerts_topic}


def _failure_destinations(resources: dict[str, Any]) -> None:
    functions = resources.get("aws_lambda_function", {})
    configs = resources.setdefault("aws_lambda_function_event_invoke_config", {})
    for name in ASYNC_FUNCTIONS:
        if name not in functions:
            continue
        configs[name] = {
            "function_name": f"${{aws_lambda_function.{name}.function_name}}",
            "maximum_retry_attempts": 2,
            "maximum_event_age_in_seconds": 21600,
            "destination_config": {
                "on_failure": {"destination": "${aws_sqs_queue.failure_queue.arn}"}
            },
        }


def postprocess(tf_path: Path, stage: AwsStage | None) -> dict[str, Any]:
    """Rewrite ``tf_path`` (see the module docstring); returns the result. Without the stage's
    settings (a stage not in ``deploy/aws-stages.json``) only the stage-independent parts."""
    tf = json.loads(tf_path.read_text())
    resources = tf.setdefault("resource", {})
    _versions(tf)
    _api_stage(resources, tf)
    if stage is not None:
        _log_groups(resources, stage)
        _rules(resources, stage)
        _queues(resources, stage)
        _topics(resources, stage)
        _failure_destinations(resources)
    enable_partial_batch_responses(tf)
    tf_path.write_text(json.dumps(tf, indent=2))
    return tf
