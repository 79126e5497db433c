"""Drive credentials from the cloud's secret store, loaded into the environment on first use.

On AWS, ``DRIVE_SECRET_ARN`` names a Secrets Manager secret (name or ARN) or an SSM
``SecureString`` parameter (``arn:aws:ssm:...:parameter/...``). On GCP, ``--set-secrets``
already places the secret in an environment variable, so nothing is fetched there. The value
is either a service-account JSON key or ``{"DRIVE_API_KEY": "..."}``. Nothing is fetched at
import time, and the secret's value is never logged.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import MutableMapping
from typing import Any

from shared.errors import DriveAuthError, DrivepipeError
from shared.log import get_logger

SECRET_REF_ENV = "DRIVE_SECRET_ARN"
CREDENTIAL_ENVS = (
    "DRIVE_ACCESS_TOKEN",
    "DRIVE_SERVICE_ACCOUNT_JSON",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "DRIVE_API_KEY",
)
_lock = threading.Lock()
_values: dict[str, str] = {}  # read_secret's cache: secret reference -> value
log = get_logger("secrets")


def _fetch(ref: str, client_factory: Any) -> str:
    if ref.startswith("arn:aws:ssm:"):
        name = ref.split(":parameter", 1)[1]
        ssm = client_factory("ssm")
        return str(ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"])
    secrets = client_factory("secretsmanager")
    return str(secrets.get_secret_value(SecretId=ref)["SecretString"])


def credentials_from_secret(value: str) -> dict[str, str]:
    """The environment variables a secret's value stands for."""
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        raise DriveAuthError(
            'the Drive secret is not JSON: store a service-account key or {"DRIVE_API_KEY": "..."}'
        ) from None
    if isinstance(parsed, dict) and parsed.get("type") == "service_account":
        return {"DRIVE_SERVICE_ACCOUNT_JSON": value}
    if isinstance(parsed, dict) and isinstance(parsed.get("DRIVE_API_KEY"), str):
        return {"DRIVE_API_KEY": parsed["DRIVE_API_KEY"]}
    raise DriveAuthError(
        'the Drive secret holds neither a service-account key nor {"DRIVE_API_KEY": "..."}'
    )


def load_into_env(env: MutableMapping[str, str] | None = None, client_factory: Any = None) -> bool:
    """Fetch the Drive secret named by ``DRIVE_SECRET_ARN`` into ``env`` once.

    Does nothing (returns False) when no secret is named or credentials are already set.
    """
    env = os.environ if env is None else env
    ref = env.get(SECRET_REF_ENV)
    if not ref or any(env.get(name) for name in CREDENTIAL_ENVS):
        return False
    with _lock:
        if any(env.get(name) for name in CREDENTIAL_ENVS):
            return False
        if client_factory is None:
            import boto3

            client_factory = boto3.client
        try:
            value = _fetch(ref, client_factory)
        except Exception as exc:  # boto errors carry no secret values, only names
            # The caller (an HTTP client's 502 body) gets the error code only: the ARN, the
            # account and the role in the AWS message stay in the function's log.
            code = getattr(exc, "response", {}).get("Error", {}).get("Code") or type(exc).__name__
            log.error("cannot read the Drive secret", extra={"secret": ref, "error": str(exc)})
            raise DriveAuthError(
                f"cannot read the Drive secret named by {SECRET_REF_ENV} ({code}); "
                "see the function's log"
            ) from exc
        env.update(credentials_from_secret(value))
        return True


def read_secret(ref: str, client_factory: Any = None) -> str:
    """The value of a Secrets Manager secret (name or ARN) or SSM ``SecureString`` parameter
    (``arn:aws:ssm:...:parameter/...``), read once per process. Errors name ``ref`` only."""
    with _lock:
        if ref in _values:
            return _values[ref]
        if client_factory is None:
            import boto3

            client_factory = boto3.client
        try:
            value = _fetch(ref, client_factory)
        except Exception as exc:  # boto errors carry no secret values, only names
            raise DrivepipeError(f"cannot read the secret {ref}: {type(exc).__name__}") from exc
        _values[ref] = value
        return value
