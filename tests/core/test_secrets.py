"""Drive credentials from Secrets Manager / SSM, against a real moto_server."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from devstack.servers import MotoServer
from shared.errors import DriveAuthError
from shared.secrets import credentials_from_secret, load_into_env

SA_KEY = json.dumps(
    {
        "type": "service_account",
        "client_email": "x@p.iam.gserviceaccount.com",
        "private_key": "-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n",
    }
)


@pytest.fixture
def clients(moto_server: MotoServer, s3_env: dict[str, str]) -> Any:
    return moto_server.client


def test_service_account_secret_lands_in_the_env(clients: Any) -> None:
    arn = clients("secretsmanager").create_secret(
        Name="drivepipe/dev/drive-sa", SecretString=SA_KEY
    )["ARN"]
    env = {"DRIVE_SECRET_ARN": arn}
    assert load_into_env(env, client_factory=clients) is True
    assert env["DRIVE_SERVICE_ACCOUNT_JSON"] == SA_KEY
    assert load_into_env(env, client_factory=clients) is False  # already loaded: no refetch


def test_api_key_from_an_ssm_secure_string(clients: Any) -> None:
    clients("ssm").put_parameter(
        Name="/drivepipe/dev/drive",
        Type="SecureString",
        Value=json.dumps({"DRIVE_API_KEY": "AIza-test"}),
    )
    env = {"DRIVE_SECRET_ARN": "arn:aws:ssm:us-east-1:123456789012:parameter/drivepipe/dev/drive"}
    assert load_into_env(env, client_factory=clients) is True
    assert env["DRIVE_API_KEY"] == "AIza-test"


def test_missing_secret_is_a_clear_auth_error_naming_neither_arn_nor_value(
    clients: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The message reaches HTTP callers (502): the error code only. The ARN (account, region,
    name) is in the function's log."""
    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:drivepipe/dev/does-not-exist"
    env = {"DRIVE_SECRET_ARN": arn}
    logger = logging.getLogger("drivepipe.secrets")
    logger.addHandler(caplog.handler)
    try:
        with pytest.raises(DriveAuthError) as raised:
            load_into_env(env, client_factory=clients)
    finally:
        logger.removeHandler(caplog.handler)
    message = str(raised.value)
    assert message == (
        "cannot read the Drive secret named by DRIVE_SECRET_ARN (ResourceNotFoundException); "
        "see the function's log"
    )
    assert "123456789012" not in message and "does-not-exist" not in message
    assert any(getattr(r, "secret", None) == arn for r in caplog.records)


def test_nothing_is_fetched_without_a_reference_or_with_credentials_set() -> None:
    def explode(service: str) -> Any:
        raise AssertionError("must not be called")

    assert load_into_env({}, client_factory=explode) is False
    assert (
        load_into_env({"DRIVE_SECRET_ARN": "x", "DRIVE_API_KEY": "k"}, client_factory=explode)
        is False
    )


@pytest.mark.parametrize("value", ["not json", json.dumps({"type": "authorized_user"}), "[]"])
def test_unusable_secret_values_are_refused_without_echoing_them(value: str) -> None:
    with pytest.raises(DriveAuthError) as info:
        credentials_from_secret(value)
    assert value not in str(info.value) or value == "[]"
