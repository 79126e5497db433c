"""Unit tests of credential selection, service-account tokens and secret masking."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from urllib.parse import parse_qs

import pytest
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from shared.drive import ApiKeyAuth, DriveClient, ServiceAccountAuth, TokenAuth, mask_secrets
from shared.drive.auth import READONLY_SCOPE, auth_from_env
from shared.errors import DriveAuthError

TOKEN_URI = "https://oauth2.test/token"


def _service_account_info() -> dict[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {
        "type": "service_account",
        "project_id": "p",
        "private_key_id": "k1",
        "private_key": pem,
        "client_email": "sync@p.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": TOKEN_URI,
    }


def test_missing_credentials_name_every_variable() -> None:
    with pytest.raises(DriveAuthError) as info:
        DriveClient.from_env({})
    message = str(info.value)
    for var in (
        "DRIVE_API_KEY",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "DRIVE_SERVICE_ACCOUNT_JSON",
        "DRIVE_ACCESS_TOKEN",
    ):
        assert var in message


def test_invalid_service_account_inputs_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DriveAuthError, match="DRIVE_SERVICE_ACCOUNT_JSON is not valid JSON"):
        auth_from_env({"DRIVE_SERVICE_ACCOUNT_JSON": "{nope"})
    with pytest.raises(DriveAuthError, match="not a service-account key"):
        auth_from_env({"DRIVE_SERVICE_ACCOUNT_JSON": '{"type": "authorized_user"}'})
    with pytest.raises(DriveAuthError, match="cannot be read"):
        auth_from_env({"GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "missing.json")})
    broken = {
        "type": "service_account",
        "client_email": "a@b",
        "token_uri": TOKEN_URI,
        "private_key": "-----BEGIN PRIVATE KEY-----\nAIzaSECRETKEY\n-----END PRIVATE KEY-----",
    }
    with pytest.raises(DriveAuthError, match="not a valid service-account key") as info:
        auth_from_env({"DRIVE_SERVICE_ACCOUNT_JSON": json.dumps(broken)})
    assert "AIzaSECRETKEY" not in str(info.value)


def test_credential_precedence_and_reprs_hide_secrets() -> None:
    assert isinstance(auth_from_env({"DRIVE_API_KEY": "k", "DRIVE_ACCESS_TOKEN": "t"}), TokenAuth)
    key_auth = auth_from_env({"DRIVE_API_KEY": "AIzaSECRET"})
    assert isinstance(key_auth, ApiKeyAuth) and "AIzaSECRET" not in repr(key_auth)
    client = DriveClient.from_env(
        {"DRIVE_ACCESS_TOKEN": "tok-SECRET", "DRIVE_API_URL": "http://h/v3"}
    )
    assert client.base_url == "http://h/v3" and "tok-SECRET" not in repr(client)
    with pytest.raises(DriveAuthError, match="DRIVE_API_KEY is empty"):
        ApiKeyAuth("  ")


def test_mask_secrets() -> None:
    text = "GET https://x/files?alt=media&key=AIzaS3cr3t&fields=id Authorization: Bearer ya29.abc"
    masked = mask_secrets(text)
    assert "AIzaS3cr3t" not in masked and "ya29.abc" not in masked
    assert "alt=media" in masked and "fields=id" in masked and "key=***" in masked


@responses.activate
def test_service_account_gets_a_readonly_token_and_sends_it(tmp_path: Path) -> None:
    responses.post(TOKEN_URI, json={"access_token": "ya29.sa-token", "expires_in": 3600})
    responses.get("https://drive.test/v3/files/f1", json={"id": "f1", "mimeType": "text/csv"})
    key_file = tmp_path / "sa.json"
    key_file.write_text(json.dumps(_service_account_info()))
    client = DriveClient.from_env(
        {"GOOGLE_APPLICATION_CREDENTIALS": str(key_file), "DRIVE_API_URL": "https://drive.test/v3"}
    )
    assert isinstance(client._http.auth, ServiceAccountAuth)
    client._http.get_json("files/f1", {})
    client._http.get_json("files/f1", {})  # the token is cached while valid
    token_calls = [c for c in responses.calls if c.request.url == TOKEN_URI]
    assert len(token_calls) == 1
    assertion = parse_qs(token_calls[0].request.body.decode())["assertion"][0]
    payload = assertion.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["scope"] == READONLY_SCOPE
    assert responses.calls[-1].request.headers["Authorization"] == "Bearer ya29.sa-token"


@responses.activate
def test_service_account_token_refusal_is_an_auth_error() -> None:
    responses.post(
        TOKEN_URI, json={"error": "invalid_grant", "error_description": "bad key"}, status=400
    )
    client = DriveClient.from_env(
        {"DRIVE_SERVICE_ACCOUNT_JSON": json.dumps(_service_account_info())}
    )
    with pytest.raises(DriveAuthError, match=r"sync@p\.iam\.gserviceaccount\.com"):
        client._http.get_json("files/x", {})
