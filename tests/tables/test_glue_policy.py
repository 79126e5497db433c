"""The generated stage policy's Glue actions (the ``glue:tables`` grant of
:mod:`deploy.aws_policy`) allow what catalog registration calls, and none is spare:
proved by enforcement on a moto server that authorizes every request against IAM
(``INITIAL_NO_AUTH_ACTION_COUNT``: only the setup requests go unchecked)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from devstack.servers import MotoServer
from shared.errors import CatalogError
from shared.storage.catalog import CatalogTable
from shared.storage.catalog.glue import GlueCatalog

CHALICE_DIR = Path(__file__).resolve().parents[2] / "chalice_app" / ".chalice"
# Every function that ends a run registers tables; the API handler's policy stands for them
# (tests/reliability/test_least_privilege.py checks each function's grants).
POLICY = CHALICE_DIR / "policy-dev-api_handler.json"
# Enough unchecked requests for the readiness probe and the setup; the rest are spent before
# the test starts, so every request it makes is authenticated and authorized.
SETUP_REQUESTS = 12
ACTIONS = [
    "glue:GetTable",
    "glue:CreateTable",
    "glue:UpdateTable",
    "glue:GetPartitions",
    "glue:BatchCreatePartition",
    "glue:BatchUpdatePartition",
    "glue:BatchDeletePartition",
]
TABLE = CatalogTable(
    name="sales",
    location="s3://drivepipe-out-dev/sales/sales/",
    columns=[("_drive_id", "string"), ("price", "double")],
    partition_keys=["region"],
    partitions=[(("EU",), "s3://drivepipe-out-dev/sales/sales/region=EU/")],
    version=1,
)


@pytest.fixture
def enforcing_moto(monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoServer]:
    monkeypatch.setenv("INITIAL_NO_AUTH_ACTION_COUNT", str(SETUP_REQUESTS))
    with MotoServer() as server:
        monkeypatch.delenv("INITIAL_NO_AUTH_ACTION_COUNT")
        yield server


def glue_statement(drop: str | None = None) -> dict[str, Any]:
    """RegisterTablesInGlue's actions from the generated dev policy, optionally without one.

    moto authorizes Glue requests by action against the resource ``*`` (its Glue responses
    name no resource; only S3's do), so a statement scoped to ARNs never matches there: the
    test keeps the policy's exact action list and widens the resource. The ARNs' shape is
    checked by tests/reliability/test_least_privilege.py, not by enforcement.
    """
    statement = next(
        s for s in json.loads(POLICY.read_text())["Statement"] if s["Sid"] == "RegisterTablesInGlue"
    )
    assert all(":111122223333:" in r for r in statement["Resource"])
    actions = [a for a in statement["Action"] if a != drop]
    return {"Effect": "Allow", "Action": actions, "Resource": "*"}


def glue_as_user(server: MotoServer, statement: dict[str, Any]) -> Any:
    base = {"endpoint_url": server.url, "region_name": "us-east-1"}
    admin = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", **base}
    boto3.client("glue", **admin).create_database(DatabaseInput={"Name": "drivepipe_dev"})
    iam = boto3.client("iam", **admin)
    iam.create_user(UserName="fn")
    document = json.dumps({"Version": "2012-10-17", "Statement": [statement]})
    iam.put_user_policy(UserName="fn", PolicyName="p", PolicyDocument=document)
    key = iam.create_access_key(UserName="fn")["AccessKey"]
    admin_glue = boto3.client("glue", **admin)
    for _ in range(SETUP_REQUESTS):  # spend what is left of the unchecked requests
        try:
            admin_glue.get_databases()
        except ClientError as exc:
            assert "InvalidClientTokenId" in str(exc)
            break
    else:
        raise AssertionError("moto never started enforcing IAM")
    return boto3.client(
        "glue",
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
        **base,
    )


def register_three_times(catalog: GlueCatalog) -> list[list[str]]:
    """Create (with a partition), widen a column (the partition's columns follow), then lose
    the partition: every call registration makes."""
    wider = replace(TABLE, columns=[("_drive_id", "string"), ("price", "string")], version=2)
    return [
        catalog.register("drivepipe_dev", TABLE, schema_changed=True),
        catalog.register("drivepipe_dev", wider, schema_changed=True),
        catalog.register("drivepipe_dev", replace(wider, partitions=[]), schema_changed=False),
    ]


def test_the_policy_allows_every_call_registration_makes(enforcing_moto: MotoServer) -> None:
    glue = glue_as_user(enforcing_moto, glue_statement())
    assert register_three_times(GlueCatalog(glue)) == [
        ["created", "partitions added: 1"],
        ["updated", "partitions updated: 1"],
        ["partitions removed: 1"],
    ]


@pytest.mark.parametrize("action", ACTIONS)
def test_each_action_is_needed(enforcing_moto: MotoServer, action: str) -> None:
    glue = glue_as_user(enforcing_moto, glue_statement(drop=action))
    with pytest.raises(CatalogError, match=f"not authorized to perform: {action}"):
        register_three_times(GlueCatalog(glue))
