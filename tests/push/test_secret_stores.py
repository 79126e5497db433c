"""Channel tokens in each secret store: AWS Secrets Manager on moto_server, Google Secret Manager
on the local stand-in (its requests and answers checked against secretmanager.v1.json), and
the local directory store."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.secretmanager_local import SecretManagerStandIn
from shared.errors import ConfigError, SecretStoreError
from shared.run import channel_secrets
from shared.run.channel_secrets import configured_store, delete_token, read_token
from tests.drive_emulator.test_discovery_schema import schema_errors

googleapiclient = pytest.importorskip("googleapiclient")
DISCOVERY = (
    Path(googleapiclient.__file__).parent / "discovery_cache/documents/secretmanager.v1.json"
)
TOKEN = "tok-" + "x" * 40


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    channel_secrets._cache.clear()
    yield
    channel_secrets._cache.clear()


def roundtrip(spec: str) -> str:
    ref = configured_store(spec).put("sales/drivepipe-0123", TOKEN)
    assert read_token(ref) == TOKEN
    channel_secrets._cache.clear()
    assert read_token(ref) == TOKEN  # from the store, not the cache
    delete_token(ref)
    with pytest.raises(SecretStoreError) as gone:
        read_token(ref)
    assert TOKEN not in str(gone.value)
    delete_token(ref)  # idempotent
    return ref


def test_aws_secrets_manager_on_moto(s3_env: dict[str, str]) -> None:
    prefix = f"drivepipe/test-{uuid.uuid4().hex[:8]}"
    assert roundtrip(f"aws-sm:{prefix}") == f"aws-sm:{prefix}/sales/drivepipe-0123"


@pytest.fixture
def secret_manager(monkeypatch: pytest.MonkeyPatch) -> Iterator[SecretManagerStandIn]:
    with SecretManagerStandIn() as stand_in:
        monkeypatch.setenv("SECRET_MANAGER_EMULATOR_HOST", stand_in.host)
        yield stand_in


def method(doc: dict[str, Any], *path: str) -> dict[str, Any]:
    node: dict[str, Any] = doc
    for resource in path[:-1]:
        node = node["resources"][resource]
    found: dict[str, Any] = node["methods"][path[-1]]
    return found


def test_google_secret_manager_calls_fit_the_discovery_document(
    secret_manager: SecretManagerStandIn,
) -> None:
    ref = roundtrip("gcp-sm:projects/demo")
    assert ref == "gcp-sm:projects/demo/secrets/drivepipe-channel-sales-drivepipe-0123"
    doc = json.loads(DISCOVERY.read_text())
    secrets = ("projects", "secrets")
    create = method(doc, *secrets, "create")
    add = method(doc, *secrets, "addVersion")
    access = method(doc, *secrets, "versions", "access")
    delete = method(doc, *secrets, "delete")
    assert (create["httpMethod"], create["path"]) == ("POST", "v1/{+parent}/secrets")
    assert "secretId" in create["parameters"]
    assert (add["httpMethod"], add["path"]) == ("POST", "v1/{+parent}:addVersion")
    assert (access["httpMethod"], access["path"]) == ("GET", "v1/{+name}:access")
    assert (delete["httpMethod"], delete["path"]) == ("DELETE", "v1/{+name}")
    calls = [(m, p) for m, p, _ in secret_manager.requests]
    name = "projects/demo/secrets/drivepipe-channel-sales-drivepipe-0123"
    assert calls[:3] == [
        ("POST", "/v1/projects/demo/secrets"),
        ("POST", f"/v1/{name}:addVersion"),
        ("GET", f"/v1/{name}/versions/latest:access"),
    ]
    bodies = {p: b for m, p, b in secret_manager.requests if m == "POST"}
    assert schema_errors(bodies["/v1/projects/demo/secrets"], {"$ref": "Secret"}, doc, "S") == []
    added = bodies[f"/v1/{name}:addVersion"]
    assert schema_errors(added, {"$ref": "AddSecretVersionRequest"}, doc, "A") == []
    answer = secret_manager.answer("GET", f"/v1/{name}/versions/latest:access", {}, None)
    assert answer[0] == 404  # deleted by the round trip


def test_the_stand_in_answers_fit_the_document(secret_manager: SecretManagerStandIn) -> None:
    doc = json.loads(DISCOVERY.read_text())
    status, created = secret_manager.answer(
        "POST", "/v1/projects/p/secrets", {"secretId": ["s1"]}, {"replication": {"automatic": {}}}
    )
    assert status == 200 and schema_errors(created, {"$ref": "Secret"}, doc, "Secret") == []
    status, version = secret_manager.answer(
        "POST", "/v1/projects/p/secrets/s1:addVersion", {}, {"payload": {"data": "YWJj"}}
    )
    assert status == 200 and schema_errors(version, {"$ref": "SecretVersion"}, doc, "V") == []
    status, access = secret_manager.answer(
        "GET", "/v1/projects/p/secrets/s1/versions/latest:access", {}, None
    )
    assert status == 200
    assert schema_errors(access, {"$ref": "AccessSecretVersionResponse"}, doc, "R") == []
    again = secret_manager.answer(
        "POST", "/v1/projects/p/secrets", {"secretId": ["s1"]}, {"replication": {"automatic": {}}}
    )
    assert again[0] == 409


def test_the_directory_store_keeps_tokens_private(tmp_path: Path) -> None:
    ref = configured_store(f"dir:{tmp_path / 'tokens'}").put("sales/drivepipe-0123", TOKEN)
    path = Path(ref.removeprefix("dir:"))
    assert oct(path.stat().st_mode & 0o777) == "0o600" and read_token(ref) == TOKEN
    roundtrip(f"dir:{tmp_path / 'other'}")


def test_an_unset_or_unreachable_store_says_so_without_the_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from shared.settings import _load

    monkeypatch.delenv("DRIVEPIPE_CHANNEL_SECRETS", raising=False)
    _load.cache_clear()
    with pytest.raises(ConfigError, match="DRIVEPIPE_CHANNEL_SECRETS"):
        configured_store()
    monkeypatch.setenv("SECRET_MANAGER_EMULATOR_HOST", "127.0.0.1:9")  # nothing listens
    with pytest.raises(SecretStoreError) as caught:
        configured_store("gcp-sm:projects/demo").put("sales/c", TOKEN)
    assert TOKEN not in str(caught.value)
