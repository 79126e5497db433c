"""Permissions are least privilege on both clouds, and HTTP needs authentication by default.

(The per-route authorizer checks live in tests/aws/test_auth.py; these are the cross-cloud
invariants the reliability campaign relies on, checked on the shipped artifacts.)
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deploy.package_gcp import DeployConfig, deploy_commands, setup_commands
from deploy.push_gcp import TOKEN_PERMISSIONS, TOKEN_ROLE

REPO = Path(__file__).resolve().parents[2]
POLICIES = sorted((REPO / "chalice_app" / ".chalice").glob("policy-*.json"))
# What the code calls: logs, bucket listing, object get/put/delete (leases and claims delete
# their own objects), the Drive secret, the fan-out and push queues if a stage uses them, the
# run notifications' SNS topic and webhook secret, and with push the channel tokens (created
# and deleted by the schedule's upkeep, read by the webhook).
AWS_ACTIONS = {
    "logs:CreateLogGroup",
    "logs:CreateLogStream",
    "logs:PutLogEvents",
    "s3:ListBucket",
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "secretsmanager:GetSecretValue",
    "secretsmanager:CreateSecret",  # channel tokens only (on_schedule)
    "secretsmanager:DeleteSecret",  # channel tokens only (on_schedule)
    "sns:Publish",  # run notifications (notify.sns_topic)
    # catalog.glue (shared/storage/catalog/glue.py): register a pipeline's tables
    "glue:GetTable",
    "glue:CreateTable",
    "glue:UpdateTable",
    "glue:GetPartitions",
    "glue:BatchCreatePartition",
    "glue:BatchUpdatePartition",
    "glue:BatchDeletePartition",
}
GCP_ROLES = {
    "roles/storage.objectViewer",
    "roles/storage.objectAdmin",
    "roles/secretmanager.secretAccessor",
    "roles/eventarc.eventReceiver",
    "roles/pubsub.publisher",
    "roles/run.invoker",
    "roles/iam.serviceAccountTokenCreator",
    "roles/cloudbuild.builds.builder",  # the build service account's only role
    "roles/bigquery.dataEditor",  # catalog.bigquery, on one dataset (--bigquery-dataset)
}


def test_there_are_per_function_policies() -> None:
    assert {p.name for p in POLICIES} >= {
        "policy-dev-on_upload.json",
        "policy-prod-api_handler.json",
    }


@pytest.mark.parametrize("policy", POLICIES, ids=[p.name for p in POLICIES])
def test_aws_policy_grants_named_actions_on_named_resources(policy: Path) -> None:
    statements = json.loads(policy.read_text())["Statement"]
    for statement in statements:
        assert statement["Effect"] == "Allow"
        actions = (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        resources = (
            statement["Resource"]
            if isinstance(statement["Resource"], list)
            else [statement["Resource"]]
        )
        for action in actions:
            assert "*" not in action, (policy.name, action)
            assert action in AWS_ACTIONS or action.startswith("sqs:"), (policy.name, action)
        stage = policy.stem.split("-")[1]
        if {"secretsmanager:CreateSecret", "secretsmanager:DeleteSecret"} & set(actions):
            assert resources == [  # the channel tokens' prefix, never the Drive secret
                f"arn:aws:secretsmanager:us-east-1:111122223333:secret:drivepipe/{stage}/channels/*"
            ], (policy.name, statement)
        for resource in resources:
            assert resource != "*", (policy.name, statement)
            if ":secretsmanager:" in resource:  # the stage's own secrets, by name
                assert f":secret:drivepipe/{stage}/" in resource, (policy.name, resource)
                if "channels" not in resource:
                    assert resource.endswith("-??????"), (policy.name, resource)
            if ":sns:" in resource:
                assert resource.endswith(f":drivepipe-alerts-{stage}"), (policy.name, resource)
            if ":sqs:" in resource:
                assert resource.rsplit(":", 1)[1].startswith("drivepipe-"), (policy.name, resource)
                assert f"-{stage}" in resource.rsplit(":", 1)[1], (policy.name, resource)
            if ":glue:" in resource:  # the catalog, the stage's database and its tables only
                glue = resource.split(":", 5)[5]
                assert glue in (
                    "catalog",
                    f"database/drivepipe_{stage}",
                    f"table/drivepipe_{stage}/*",
                ), (policy.name, resource)
            if resource.startswith("arn:aws:s3:::"):
                bucket = resource.removeprefix("arn:aws:s3:::").split("/")[0]
                assert bucket and "*" not in bucket, (policy.name, resource)
            if any(a.startswith(("s3:", "secretsmanager:", "sqs:", "sns:")) for a in actions):
                assert not resource.startswith("arn:aws:logs"), (policy.name, resource)
            if resource.startswith("arn:aws:logs"):  # the function's own log group only
                function = policy.stem.split("-", 2)[2]
                suffix = "" if function == "api_handler" else f"-{function}"
                assert resource.endswith(
                    f":log-group:/aws/lambda/drivepipe-{policy.stem.split('-')[1]}{suffix}:*"
                )


def test_glue_goes_to_the_functions_that_end_runs_and_only_there() -> None:
    """Registering tables (``shared.run.tables.register``) happens where a sync or a fanned-out
    run ends; ``failed_events`` writes manifests of failed invocations and registers nothing."""
    with_glue = {
        p.stem.split("-", 2)[2]
        for p in POLICIES
        if p.stem.startswith("policy-dev-")
        and any(s["Sid"] == "RegisterTablesInGlue" for s in json.loads(p.read_text())["Statement"])
    }
    assert with_glue == {
        "api_handler",
        "on_upload",
        "on_schedule",
        "fanout_worker",
        "fanout_dead_letter",
        "push_worker",
    }


def _gcp() -> DeployConfig:
    return DeployConfig(
        project="acme-data", region="europe-west1", input_bucket="acme-in", output_bucket="acme-out"
    )


def test_gcp_grants_are_predefined_narrow_roles_on_resources_not_the_project() -> None:
    bindings = [c.argv for c in setup_commands(_gcp()) if "add-iam-policy-binding" in c.argv]
    assert bindings
    for argv in bindings:
        role = next(w.split("=", 1)[1] for w in argv if w.startswith("--role="))
        assert role in GCP_ROLES, role
        assert role not in ("roles/owner", "roles/editor", "roles/storage.admin")
        member = next(w for w in argv if w.startswith("--member="))
        if "drivepipe-fn@" in member:  # the runtime SA: bucket/secret bindings only
            target = argv[argv.index("add-iam-policy-binding") + 1]
            assert target != "acme-data", argv


def test_gcp_http_function_requires_authentication() -> None:
    argvs = [c.argv for c in deploy_commands(_gcp())]
    http = [a for a in argvs if "--trigger-http" in a]
    assert http, "no HTTP function is deployed"
    for argv in http:
        assert "--no-allow-unauthenticated" in argv
    assert not any("--allow-unauthenticated" in a for a in argvs)


def test_gcp_push_adds_one_project_binding_holding_only_the_channel_token_permissions() -> None:
    """``secretmanager.secrets.create`` is checked on the project, so creating one secret per
    channel takes a project-level binding: a custom role with the four permissions the token
    store uses, and nothing else at project level for the runtime service account."""
    push = DeployConfig(
        project="acme-data",
        region="europe-west1",
        input_bucket="acme-in",
        output_bucket="acme-out",
        push=True,
    )
    commands = [c.argv for c in setup_commands(push)]
    (role,) = [a for a in commands if a[1:4] == ("iam", "roles", "create")]
    assert role[4] == TOKEN_ROLE
    permissions = next(w for w in role if w.startswith("--permissions=")).split("=", 1)[1]
    assert (
        set(permissions.split(","))
        == set(TOKEN_PERMISSIONS)
        == {
            "secretmanager.secrets.create",
            "secretmanager.secrets.delete",
            "secretmanager.versions.add",
            "secretmanager.versions.access",
        }
    )
    runtime = "--member=serviceAccount:drivepipe-fn@acme-data.iam.gserviceaccount.com"
    on_project = [
        next(w for w in a if w.startswith("--role="))
        for a in commands
        if a[1:3] == ("projects", "add-iam-policy-binding") and runtime in a
    ]
    assert on_project == [f"--role=projects/acme-data/roles/{TOKEN_ROLE}"]
    publishers = {
        a[4]
        for a in commands
        if a[1:4] == ("pubsub", "topics", "add-iam-policy-binding") and runtime in a
    }
    assert publishers == {"drivepipe-alerts", "drivepipe-push"}  # notify, push hand-offs
