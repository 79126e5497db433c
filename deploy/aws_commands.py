"""The AWS CLI commands around ``chalice deploy`` for a stage (``deploy.aws_stage commands``).

Before the first deploy (:func:`setup_commands`): buckets, the Drive secret, the queues (each
with a visibility timeout of :data:`VISIBILITY_FACTOR` times its consumer's timeout, a work or
push queue redriving to its dead-letter queue after 5 receives), the alerts topic and the
webhook secret. After it (:func:`after_deploy_commands`): what Chalice cannot set: failure
destinations, partial batch responses, log retention. :func:`queues` is shared with the
Terraform rewrite (:mod:`deploy.terraform_aws`), so both create the same queues.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from deploy import aws_policy

if TYPE_CHECKING:
    from deploy.aws_stage import AwsStage

# AWS advises an SQS visibility timeout of 6x the consuming function's timeout.
VISIBILITY_FACTOR = 6
MAX_RECEIVES = 5  # a queue dead-letters after this many receives (fanout.max_attempts)
RETENTION_SECONDS = 1_209_600  # 14 days, SQS's maximum


def _queue_attributes(stage: AwsStage, consumer: str, redrive_to: str | None = None) -> str:
    attributes = {
        "VisibilityTimeout": str(VISIBILITY_FACTOR * stage.timeout(consumer)),
        "MessageRetentionPeriod": str(RETENTION_SECONDS),
    }
    if redrive_to:
        target = {
            "deadLetterTargetArn": stage.queue_arn(redrive_to),
            "maxReceiveCount": str(MAX_RECEIVES),
        }
        attributes["RedrivePolicy"] = json.dumps(target)
    return json.dumps(attributes)


def queues(stage: AwsStage) -> list[tuple[str, str, str | None]]:
    """``(queue, consumer whose timeout sets its visibility, dead-letter queue)``, in the order
    they must be created (a dead-letter queue before the queue that redrives to it)."""
    found: list[tuple[str, str, str | None]] = [
        (stage.failure_queue, aws_policy.FAILURE_FUNCTION, None)
    ]
    if stage.fanout:
        found += [
            (stage.dead_letter_queue, "fanout_dead_letter", None),
            (stage.work_queue, "fanout_worker", stage.dead_letter_queue),
        ]
    if stage.push:  # nothing consumes the push DLQ: it keeps what the reconcile heals anyway
        found += [
            (stage.push_dead_letter_queue, "push_worker", None),
            (stage.push_queue, "push_worker", stage.push_dead_letter_queue),
        ]
    return found


def setup_commands(stage: AwsStage) -> list[str]:
    """Buckets, the Drive secret, the queues and the notification targets, before the first
    deploy."""
    region = f"--region {stage.region}"
    location = (
        ""
        if stage.region == "us-east-1"
        else f" --create-bucket-configuration LocationConstraint={stage.region}"
    )
    lines = [f"# stage {stage.name}: account {stage.account}, region {stage.region}"]
    for bucket in (stage.input_bucket, stage.output_bucket):
        lines += [
            f"aws s3api create-bucket {region} --bucket {bucket}{location}",
            f"aws s3api put-public-access-block {region} --bucket {bucket} "
            "--public-access-block-configuration BlockPublicAcls=true,IgnorePublicAcls=true,"
            "BlockPublicPolicy=true,RestrictPublicBuckets=true",
        ]
    lines.append(
        f"aws secretsmanager create-secret {region} --name {stage.secret_name} "
        "--secret-string file://service-account.json"
    )
    for queue, consumer, redrive in queues(stage):
        attributes = _queue_attributes(stage, consumer, redrive)
        lines.append(
            f"aws sqs create-queue {region} --queue-name {queue} --attributes '{attributes}'"
        )
    if stage.notify_sns:
        lines += [
            f"aws sns create-topic {region} --name {stage.alerts_topic}",
            f"# e-mail: aws sns subscribe {region} --topic-arn "
            f"{stage.arns()['alerts_topic']} --protocol email --notification-endpoint "
            "you@example.com (then confirm it from the e-mail)",
        ]
    if stage.notify_webhook:
        lines.append(
            f"aws secretsmanager create-secret {region} --name {stage.webhook_secret_name} "
            "--secret-string file://webhook-url.txt  # the Slack incoming-webhook URL"
        )
    return lines


def after_deploy_commands(stage: AwsStage) -> list[str]:
    """What Chalice cannot configure: failure destinations, partial batch responses."""
    region = f"--region {stage.region}"
    destination = json.dumps({"OnFailure": {"Destination": stage.queue_arn(stage.failure_queue)}})
    lines = []
    for function in ("on_upload", "on_schedule"):
        lines.append(
            f"aws lambda put-function-event-invoke-config {region} "
            f"--function-name {stage.function_name(function)} --maximum-retry-attempts 2 "
            f"--maximum-event-age-in-seconds 21600 --destination-config '{destination}'"
        )
    for function in aws_policy.functions(stage):  # Chalice's own setting breaks its Terraform
        lines.append(
            f"aws logs create-log-group {region} --log-group-name {stage.log_group(function)} "
            "2>/dev/null; "
            f"aws logs put-retention-policy {region} --log-group-name "
            f"{stage.log_group(function)} --retention-in-days {stage.log_retention_days}"
        )
    consumers = [aws_policy.FAILURE_FUNCTION]
    consumers += list(aws_policy.FANOUT_FUNCTIONS) if stage.fanout else []
    consumers += list(aws_policy.PUSH_FUNCTIONS) if stage.push else []
    for function in consumers:
        name = stage.function_name(function)
        lines += [
            f"UUID=$(aws lambda list-event-source-mappings {region} --function-name {name} "
            "--query 'EventSourceMappings[0].UUID' --output text)",
            f"aws lambda update-event-source-mapping {region} --uuid $UUID "
            "--function-response-types ReportBatchItemFailures",
        ]
    return lines
