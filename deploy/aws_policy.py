"""Each Lambda function's IAM policy, from one table: which grants each function's code needs.

:data:`GRANTS` says, per function, what it touches; :func:`statements` turns one grant into
IAM statements on the stage's own resources (:class:`deploy.aws_stage.AwsStage`). To give a
function a new permission (say ``sns:Publish`` for notifications, or Glue for tables), add a
grant to :data:`GRANT_ACTIONS` with the resources it applies to, and name it in the function's
row of :data:`GRANTS`.

Nothing here is trusted by reading it: ``tests/aws/test_enforced_permissions.py`` runs every
function from the built artifacts against moto_server with IAM enforcement on, under
credentials holding exactly :func:`function_policy` for that function.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deploy.aws_stage import AwsStage

# Functions whose code runs only when the stage fans out, or records failed deliveries.
FANOUT_FUNCTIONS = ("fanout_worker", "fanout_dead_letter")
FAILURE_FUNCTION = "failed_events"

# What each function's code calls. "failed:send" is not the code's: Lambda sends a failed
# asynchronous invocation to the on-failure destination with the function's own role.
GRANTS: dict[str, tuple[str, ...]] = {
    "api_handler": ("output:rw", "drive:secret", "work:send"),
    "on_upload": ("input:read", "output:rw", "drive:secret", "failed:send"),
    "on_schedule": ("output:rw", "drive:secret", "work:send", "failed:send"),
    "fanout_worker": ("output:rw", "drive:secret", "work:consume"),
    "fanout_dead_letter": ("output:rw", "dlq:consume"),
    FAILURE_FUNCTION: ("input:read", "output:rw", "failed:consume"),  # reads request files
}

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
}


def functions(stage: AwsStage) -> tuple[str, ...]:
    """The functions the stage deploys (the fan-out pair only when it fans out)."""
    return tuple(f for f in GRANTS if stage.fanout or f not in FANOUT_FUNCTIONS)


def grants(function: str, stage: AwsStage) -> tuple[str, ...]:
    """The function's grants; without fan-out, nothing on the work queue."""
    return tuple(g for g in GRANTS[function] if stage.fanout or not g.startswith("work:"))


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
