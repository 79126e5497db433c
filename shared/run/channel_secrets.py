"""Channel tokens in a secret store: one random secret per channel, only a reference in state.

``DRIVEPIPE_CHANNEL_SECRETS`` names the store that new tokens go to; a reference says which
store holds it, so a token written before a change of store still resolves:

- ``aws-sm:PREFIX`` → AWS Secrets Manager, one secret ``PREFIX/<pipeline>/<channel id>``
  (reference ``aws-sm:<name>``; ``AWS_ENDPOINT_URL`` reaches moto locally);
- ``gcp-sm:projects/P`` → Google Secret Manager over REST (google-auth credentials), one secret
  ``drivepipe-channel-<pipeline>-<channel id>`` (reference ``gcp-sm:projects/P/secrets/ID``);
  ``SECRET_MANAGER_EMULATOR_HOST=host:port`` sends it, unauthenticated, to a local stand-in;
- ``dir:PATH`` → one file per token (mode 0600), for local development only.

Values are never logged or put in an error message. Tokens do not change once written, so
:func:`read_token` caches them per process (a warm function reads each once).
"""

from __future__ import annotations

import base64
import os
import re
import threading
from pathlib import Path
from typing import Any, Protocol

from shared.errors import ConfigError, SecretStoreError
from shared.settings import runtime_settings

STORE_ENV = "DRIVEPIPE_CHANNEL_SECRETS"
GCP_EMULATOR_ENV = "SECRET_MANAGER_EMULATOR_HOST"
GCP_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_cache: dict[str, str] = {}
_cache_lock = threading.Lock()


class SecretStore(Protocol):
    """Where channel tokens are kept."""

    def put(self, name: str, value: str) -> str:
        """Keep ``value`` under ``name`` (a pipeline and channel id); returns its reference."""
        ...


def _safe(name: str) -> str:
    return _UNSAFE.sub("-", name).strip("-")[:200] or "channel"


def _why(exc: Exception) -> str:
    """An AWS error's code (``AccessDeniedException``...), else the exception's class: what an
    operator needs (a missing permission or a missing secret), never a value."""
    code = getattr(exc, "response", {}).get("Error", {}).get("Code")
    return str(code) if code else type(exc).__name__


class AwsSecretsManager:
    """AWS Secrets Manager (boto3; ``AWS_ENDPOINT_URL`` reaches moto locally)."""

    def __init__(self, prefix: str = "drivepipe/channels", client: Any = None) -> None:
        self.prefix = prefix.strip("/")
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client(
                "secretsmanager", endpoint_url=os.environ.get("AWS_ENDPOINT_URL")
            )
        return self._client

    def put(self, name: str, value: str) -> str:
        secret = f"{self.prefix}/{'/'.join(_safe(p) for p in name.split('/'))}"
        try:
            self.client.create_secret(
                Name=secret,
                SecretString=value,
                Description="drivepipe: the token of one Drive notification channel",
            )
        except Exception as exc:  # botocore errors name the secret, never its value
            raise SecretStoreError(f"cannot create secret {secret}: {_why(exc)}") from exc
        return f"aws-sm:{secret}"

    def get(self, secret: str) -> str:
        try:
            return str(self.client.get_secret_value(SecretId=secret)["SecretString"])
        except Exception as exc:
            raise SecretStoreError(f"cannot read secret {secret}: {_why(exc)}") from exc

    def delete(self, secret: str) -> None:
        try:
            self.client.delete_secret(SecretId=secret, ForceDeleteWithoutRecovery=True)
        except Exception as exc:
            if "ResourceNotFound" not in type(exc).__name__ + str(exc):
                raise SecretStoreError(f"cannot delete secret {secret}: {exc}") from exc


class GcpSecretManager:
    """Google Secret Manager over REST: create, addVersion, versions/latest:access, delete."""

    def __init__(self, project_path: str, session: Any = None) -> None:
        self.project = project_path.rstrip("/")  # projects/P
        emulator = os.environ.get(GCP_EMULATOR_ENV)
        base = f"http://{emulator}" if emulator else "https://secretmanager.googleapis.com"
        self.endpoint = base.rstrip("/")
        self._session = session
        self._anonymous = bool(emulator) and session is None

    def _http(self) -> Any:
        if self._session is None:
            if self._anonymous:
                import requests

                self._session = requests.Session()
            else:
                import google.auth
                from google.auth.transport.requests import AuthorizedSession

                credentials, _ = google.auth.default(scopes=[GCP_SCOPE])
                self._session = AuthorizedSession(credentials)
        return self._session

    def _call(self, method: str, path: str, what: str, **kwargs: Any) -> Any:
        try:
            answer = self._http().request(
                method, f"{self.endpoint}/v1/{path}", timeout=30, **kwargs
            )
        except Exception as exc:  # requests / google-auth transport errors
            raise SecretStoreError(f"{what}: {type(exc).__name__}") from exc
        return answer

    def put(self, name: str, value: str) -> str:
        secret_id = f"drivepipe-channel-{_safe(name.replace('/', '-'))}"[:255]
        created = self._call(
            "POST",
            f"{self.project}/secrets",
            f"cannot create secret {secret_id}",
            params={"secretId": secret_id},
            json={"replication": {"automatic": {}}},
        )
        if created.status_code not in (200, 409):
            raise SecretStoreError(f"cannot create secret {secret_id}: {created.status_code}")
        secret = f"{self.project}/secrets/{secret_id}"
        data = base64.b64encode(value.encode()).decode()
        added = self._call(
            "POST",
            f"{secret}:addVersion",
            f"cannot add a version to {secret}",
            json={"payload": {"data": data}},
        )
        if added.status_code != 200:
            raise SecretStoreError(f"cannot add a version to {secret}: {added.status_code}")
        return f"gcp-sm:{secret}"

    def get(self, secret: str) -> str:
        answer = self._call("GET", f"{secret}/versions/latest:access", f"cannot read {secret}")
        if answer.status_code != 200:
            raise SecretStoreError(f"cannot read {secret}: {answer.status_code}")
        try:
            return base64.b64decode(answer.json()["payload"]["data"]).decode()
        except (ValueError, KeyError, TypeError):
            raise SecretStoreError(f"{secret}: the answer holds no payload") from None

    def delete(self, secret: str) -> None:
        answer = self._call("DELETE", secret, f"cannot delete {secret}")
        if answer.status_code not in (200, 404):
            raise SecretStoreError(f"cannot delete {secret}: {answer.status_code}")


class DirectoryStore:
    """One file per token under a local directory (local development only)."""

    def __init__(self, root: str) -> None:
        self.root = Path(root)

    def put(self, name: str, value: str) -> str:
        path = self.root / f"{_safe(name.replace('/', '-'))}.token"
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(value)
        except OSError as exc:
            raise SecretStoreError(f"cannot write {path}: {exc.strerror}") from exc
        return f"dir:{path}"

    @staticmethod
    def get(path: str) -> str:
        try:
            return Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise SecretStoreError(f"cannot read {path}: {exc.strerror}") from exc

    @staticmethod
    def delete(path: str) -> None:
        Path(path).unlink(missing_ok=True)


def configured_store(spec: str | None = None) -> SecretStore:
    """The store new tokens go to (``DRIVEPIPE_CHANNEL_SECRETS``); ConfigError when unset."""
    spec = spec or runtime_settings().channel_secrets
    if not spec:
        raise ConfigError(
            f"{STORE_ENV} is not set: say where channel tokens are kept (aws-sm:PREFIX, "
            "gcp-sm:projects/PROJECT or dir:PATH); see docs/push.md"
        )
    scheme, _, rest = spec.partition(":")
    if scheme == "aws-sm":
        return AwsSecretsManager(rest or "drivepipe/channels")
    if scheme == "gcp-sm":
        return GcpSecretManager(rest)
    return DirectoryStore(rest)


def _backend(ref: str) -> tuple[Any, str]:
    scheme, _, rest = ref.partition(":")
    if scheme == "aws-sm":
        return AwsSecretsManager(), rest
    if scheme == "gcp-sm":
        project = "/".join(rest.split("/")[:2])
        return GcpSecretManager(project), rest
    if scheme == "dir":
        return DirectoryStore(""), rest
    raise ConfigError(f"not a channel token reference: {scheme}:...")


def read_token(ref: str) -> str:
    """The token a reference points to (cached: a token never changes once written)."""
    with _cache_lock:
        cached = _cache.get(ref)
    if cached is not None:
        return cached
    backend, name = _backend(ref)
    value: str = backend.get(name)
    with _cache_lock:
        _cache[ref] = value
    return value


def delete_token(ref: str) -> None:
    """Remove a token from its store (idempotent)."""
    backend, name = _backend(ref)
    backend.delete(name)
    with _cache_lock:
        _cache.pop(ref, None)
