"""Drive credentials: API key, service account or ready bearer token; plus secret masking."""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from shared.errors import DriveAuthError

READONLY_SCOPE = "https://www.googleapis.com/auth/drive.readonly"
CREDENTIAL_HELP = (
    "set DRIVE_API_KEY (folder shared 'anyone with the link'), "
    "GOOGLE_APPLICATION_CREDENTIALS (service-account key file) or "
    "DRIVE_SERVICE_ACCOUNT_JSON (its JSON), or DRIVE_ACCESS_TOKEN (bearer token)"
)
_SECRET_PARAM = re.compile(r"((?:[?&;]|\b)(?:key|access_token|token)=)[^&\s'\"#]+", re.IGNORECASE)
_BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)


def mask_secrets(text: str) -> str:
    """Replace API keys and tokens in URLs / headers inside ``text`` with ``***``."""
    return _BEARER.sub(r"\1***", _SECRET_PARAM.sub(r"\1***", text))


class _MaskSecretsFilter(logging.Filter):
    """Masks secrets in records of a logger we don't own (urllib3 logs URLs with ``key=``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = mask_secrets(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(mask_secrets(a) if isinstance(a, str) else a for a in record.args)
        return True


_URLLIB3_LOG_MASK = _MaskSecretsFilter()


def mask_urllib3_logs() -> None:
    """Keep API keys out of urllib3's DEBUG request lines (idempotent)."""
    logging.getLogger("urllib3.connectionpool").addFilter(_URLLIB3_LOG_MASK)


class DriveAuth(Protocol):
    """Adds credentials to one request."""

    def apply(self, params: dict[str, Any], headers: dict[str, str]) -> None:
        """Mutate the query ``params`` / ``headers`` of a request to carry credentials."""
        ...


class ApiKeyAuth:
    """An API key sent as the ``key=`` query parameter (public 'anyone with the link' folders)."""

    def __init__(self, api_key: str):
        if not api_key.strip():
            raise DriveAuthError(f"DRIVE_API_KEY is empty; {CREDENTIAL_HELP}")
        self._api_key = api_key.strip()
        mask_urllib3_logs()

    def apply(self, params: dict[str, Any], headers: dict[str, str]) -> None:
        params["key"] = self._api_key

    def __repr__(self) -> str:
        return "ApiKeyAuth(key=***)"


class TokenAuth:
    """A ready OAuth bearer token (``DRIVE_ACCESS_TOKEN``; handy for the emulator)."""

    def __init__(self, token: str):
        if not token.strip():
            raise DriveAuthError(f"DRIVE_ACCESS_TOKEN is empty; {CREDENTIAL_HELP}")
        self._token = token.strip()

    def apply(self, params: dict[str, Any], headers: dict[str, str]) -> None:
        headers["Authorization"] = f"Bearer {self._token}"

    def __repr__(self) -> str:
        return "TokenAuth(token=***)"


class ServiceAccountAuth:
    """A google-auth service account with the drive.readonly scope, refreshed when stale."""

    def __init__(self, info: Mapping[str, Any], *, source: str):
        try:
            from google.oauth2 import service_account  # lazy: google-auth is heavy to import
        except ImportError as exc:  # pragma: no cover - google-auth is a runtime dependency
            raise DriveAuthError("google-auth is required for service-account credentials") from exc
        try:
            self._credentials = service_account.Credentials.from_service_account_info(
                dict(info), scopes=[READONLY_SCOPE]
            )
        except (ValueError, KeyError) as exc:
            raise DriveAuthError(
                f"{source} is not a valid service-account key ({type(exc).__name__}: "
                f"{mask_secrets(str(exc))[:200]}); {CREDENTIAL_HELP}"
            ) from None
        self.email: str = info.get("client_email", "?")
        self._lock = threading.Lock()

    def apply(self, params: dict[str, Any], headers: dict[str, str]) -> None:
        with self._lock:
            if not self._credentials.valid:
                self._refresh()
            headers["Authorization"] = f"Bearer {self._credentials.token}"

    def _refresh(self) -> None:
        from google.auth.exceptions import RefreshError, TransportError
        from google.auth.transport.requests import Request

        try:
            self._credentials.refresh(Request())
        except (RefreshError, TransportError) as exc:
            raise DriveAuthError(
                f"service account {self.email} could not get a token: "
                f"{mask_secrets(str(exc))[:300]}"
            ) from None

    def __repr__(self) -> str:
        return f"ServiceAccountAuth(email={self.email!r})"


def _load_json(text: str, source: str) -> dict[str, Any]:
    try:
        info = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DriveAuthError(f"{source} is not valid JSON ({exc.msg}); {CREDENTIAL_HELP}") from None
    if not isinstance(info, dict) or info.get("type") != "service_account":
        raise DriveAuthError(
            f'{source} is not a service-account key (expected "type": "service_account"); '
            f"{CREDENTIAL_HELP}"
        )
    return info


def auth_from_env(env: Mapping[str, str]) -> DriveAuth:
    """Pick credentials from ``env``: token, then service account JSON/file, then API key."""
    if env.get("DRIVE_ACCESS_TOKEN"):
        return TokenAuth(env["DRIVE_ACCESS_TOKEN"])
    if env.get("DRIVE_SERVICE_ACCOUNT_JSON"):
        info = _load_json(env["DRIVE_SERVICE_ACCOUNT_JSON"], "DRIVE_SERVICE_ACCOUNT_JSON")
        return ServiceAccountAuth(info, source="DRIVE_SERVICE_ACCOUNT_JSON")
    if env.get("GOOGLE_APPLICATION_CREDENTIALS"):
        path = Path(env["GOOGLE_APPLICATION_CREDENTIALS"])
        source = f"GOOGLE_APPLICATION_CREDENTIALS ({path})"
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise DriveAuthError(f"{source} cannot be read: {exc.strerror}") from None
        return ServiceAccountAuth(_load_json(text, source), source=source)
    if env.get("DRIVE_API_KEY"):
        return ApiKeyAuth(env["DRIVE_API_KEY"])
    raise DriveAuthError(f"no Drive credentials found: {CREDENTIAL_HELP}")
