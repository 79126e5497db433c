"""Each Lambda function's IAM policy, from one table: which grants each function's code needs.

:data:`GRANTS` says, per function, what it touches; :func:`statements` turns one grant into
IAM statements on the stage's own resources (:class:`deploy.aws_stage.AwsStage`). To give a
function a new permission (say Glue for tables), add a grant to :data:`GRANT_ACTIONS` with the
resources it applies to, and name it in the function's row of :data:`GRANTS`. A grant applies
only where the stage uses what it is for (:func:`grants`): ``work:`` with fan-out, ``push:`` and
``channels:`` with push, ``notify:sns`` / ``notify:webhook`` with those notification targets,
``glue:tables`` with ``glue`` (on by default).

Who needs what, from the code paths:

- every function that finishes a run (an inline sync, an upload's run, a fanned-out run's
  finalizer, a dead letter that completes a run, a failed invocation's manifest) notifies
  (``shared.run.finish.report_run``): ``sns:Publish`` on the stage's alerts topic and the
  webhook URL's secret (``shared.run.notify.targets``);
- every function that runs a push pipeline's sync or finalizes its fanned-out run may hand one
  more sync off when notifications came meanwhile (``shared.run.pending.follow_up``): send to
  the push queue; ``failed_events`` runs no sync;
- the webhook (``api_handler``) reads channel records (the output bucket) and the channel's
  token (``shared.run.channel_secrets.read_token``), and hands off to the push queue;
- every function that ends a sync or a fanned-out run registers the pipeline's tables when
  its ``catalog.glue`` is set (``shared.run.tables.register``): the seven Glue actions of
  ``glue:tables`` on the stage's database (``drivepipe_<stage>`` unless ``glue_database``
  says otherwise) and its tables; ``failed_events`` registers nothing;
- channel upkeep (``on_schedule``) creates a token secret per new channel and deletes a stopped
  channel's (``create_secret`` / ``delete_secret``: no ``PutSecretValue``, no reads).

Nothing here is trusted by reading it: ``tests/aws/test_enforced_permissions.py`` runs every
function from the built artifacts against moto_server with IAM enforcement on, under
credentials holding exactly :func:`function_policy` for that function.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deploy.aws_stage import AwsStage

# Functions whose code runs only when the stage fans out, uses push, or records failed
# deliveries.
FANOUT_FUNCTIONS = ("fanout_worker", "fanout_dead_letter")
PUSH_FUNCTIONS = ("push_worker",)
FAILURE_FUNCTION = "failed_events"
NOTIFY = ("notify:sns", "notify:webhook")  # a run's notification (see the module docstring)
GLUE = "glue:tables"  # registering a pipeline's tables (see the module docstring)

# What each function's code calls. "failed:send" is not the code's: Lambda sends a failed
# asynchronous invocation to the on-failure destination with the function's own role.
GRANTS: dict[str, tuple[str, ...]] = {
    "api_handler": (
        "output:rw", "drive:secret", "work:send", *NOTIFY, "push:send", "channels:read", GLUE,
    ),
    "on_upload": (
        "input:read", "output:rw", "drive:secret", "failed:send", *NOTIFY, "push:send", GLUE,
    ),
    "on_schedule": (
        "output:rw", "drive:secret", "work:send", "failed:send", *NOTIFY, "push:send",
        "channels:manage", GLUE,
    ),
    "fanout_worker": ("output:rw", "drive:secret", "work:consume", *NOTIFY, "push:send", GLUE),
    "fanout_dead_letter": ("output:rw", "dlq:consume", *NOTIFY, "push:send", GLUE),  # finalizes
    FAILURE_FUNCTION: ("input:read", "output:rw", "failed:consume", *NOTIFY),  # request files
    "push_worker": ("output:rw", "drive:secret", "push:consume", *NOTIFY, "push:send", GLUE),
}  # fmt: skip

OBJECT_RW = ("s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload")
# An event source mapping polls with the function's role.
CONSUME = (
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
    "sqs:ChangeMessageVisibility",
)
# grant -> [(Sid, actions, resource kinds)]; a kind is resolved by AwsStage.arns.
GRANT_ACTIONS: dict[str, list[tuple[str, tuple[str, ...], tuple[str, ...]]]] = {
    # ListBucket makes a missing key a 404 instead of a 403 (a request file that is gone).
    "input:read": [
        ("ListInputBucket", ("s3:ListBucket",), ("input_bucket",)),
        ("ReadInputObjects", ("s3:GetObject",), ("input_objects",)),
    ],
    "output:rw": [
        ("ListOutputBucket", ("s3:ListBucket",), ("output_bucket",)),
        ("ReadWriteOutputObjects", OBJECT_RW, ("output_objects",)),
    ],
    "drive:secret": [("ReadDriveCredentials", ("secretsmanager:GetSecretValue",), ("secret",))],
    "work:send": [("SendWorkItems", ("sqs:GetQueueUrl", "sqs:SendMessage"), ("work_queue",))],
    "work:consume": [("ConsumeWorkItems", CONSUME, ("work_queue",))],
    "dlq:consume": [("ConsumeDeadLetters", CONSUME, ("dead_letter_queue",))],
    "failed:send": [("SendFailedInvocations", ("sqs:SendMessage",), ("failure_queue",))],
    "failed:consume": [("ConsumeFailedInvocations", CONSUME, ("failure_queue",))],
    "notify:sns": [("PublishRunNotifications", ("sns:Publish",), ("alerts_topic",))],
    "notify:webhook": [
        ("ReadNotificationWebhook", ("secretsmanager:GetSecretValue",), ("webhook_secret",))
    ],
    "push:send": [("SendPushSyncs", ("sqs:GetQueueUrl", "sqs:SendMessage"), ("push_queue",))],
    "push:consume": [("ConsumePushSyncs", CONSUME, ("push_queue",))],
    "channels:read": [
        ("ReadChannelTokens", ("secretsmanager:GetSecretValue",), ("channel_secrets",))
    ],
    GLUE: [
        (
            "RegisterTablesInGlue",
            (
                "glue:GetTable",
                "glue:CreateTable",
                "glue:UpdateTable",
                "glue:GetPartitions",
                "glue:BatchCreatePartition",
                "glue:BatchUpdatePartition",
                "glue:BatchDeletePartition",
            ),
            ("glue_catalog", "glue_database", "glue_tables"),
        )
    ],
    "channels:manage": [
        (
            "ManageChannelTokens",
            ("secretsmanager:CreateSecret", "secretsmanager:DeleteSecret"),
            ("channel_secrets",),
        )
    ],
}


def functions(stage: AwsStage) -> tuple[str, ...]:
    """The functions the stage deploys (the fan-out pair only when it fans out, the push
    worker only with push)."""
    return tuple(
        f
        for f in GRANTS
        if (stage.fanout or f not in FANOUT_FUNCTIONS) and (stage.push or f not in PUSH_FUNCTIONS)
    )


def applies(grant: str, stage: AwsStage) -> bool:
    """Whether the stage uses what ``grant`` is for."""
    if grant.startswith("work:"):
        return stage.fanout
    if grant.startswith(("push:", "channels:")):
        return stage.push
    if grant == "notify:sns":
        return stage.notify_sns
    if grant == "notify:webhook":
        return stage.notify_webhook
    if grant == GLUE:
        return stage.glue
    return True


def grants(function: str, stage: AwsStage) -> tuple[str, ...]:
    """The function's grants that apply to the stage (:func:`applies`)."""
    return tuple(g for g in GRANTS[function] if applies(g, stage))


def log_statement(function: str, stage: AwsStage) -> dict[str, Any]:
    """Logs of the function's own log group only (``/aws/lambda/<function name>``)."""
    group = f"arn:aws:logs:{stage.region}:{stage.account}:log-group:{stage.log_group(function)}"
    return {
        "Sid": "OwnLogGroup",
        "Effect": "Allow",
        "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": [f"{group}:*"],
    }


def statements(grant: str, stage: AwsStage) -> list[dict[str, Any]]:
    """The IAM statements of one grant on the stage's resources."""
    found = []
    for sid, actions, kinds in GRANT_ACTIONS[grant]:
        resources = [stage.arns()[kind] for kind in kinds]
        found.append(
            {"Sid": sid, "Effect": "Allow", "Action": list(actions), "Resource": resources}
        )
    return found


def function_policy(function: str, stage: AwsStage) -> dict[str, Any]:
    """The whole policy document of one function's role."""
    body = [log_statement(function, stage)]
    for grant in grants(function, stage):
        body += statements(grant, stage)
    return {"Version": "2012-10-17", "Statement": body}


def without(policy: dict[str, Any], action: str, resource_prefix: str) -> dict[str, Any]:
    """``policy`` less ``action`` on resources starting with ``resource_prefix`` (for tests
    that show a removed permission is missed)."""
    kept = []
    for statement in policy["Statement"]:
        hit = action in statement["Action"] and any(
            r.startswith(resource_prefix) for r in statement["Resource"]
        )
        if not hit:
            kept.append(statement)
            continue
        rest = [a for a in statement["Action"] if a != action]
        if rest:
            kept.append({**statement, "Action": rest})
    return {**policy, "Statement": kept}
