"""Unit tests of retries, verification and secret masking, against `responses` fakes."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

import pytest
import requests
import responses

from shared.drive import ApiKeyAuth, DriveClient, DriveFile, RetryPolicy, TokenAuth
from shared.errors import DriveError

BASE = "https://drive.test/drive/v3"
BODY = b"id,value\n1,2\n" * 100


def _file(md5: str | None = None, size: int | None = len(BODY)) -> DriveFile:
    return DriveFile(
        id="f1",
        name="a.csv",
        path="a.csv",
        mime_type="text/csv",
        size=size,
        md5=md5 or hashlib.md5(BODY).hexdigest(),
        modified_time="2024-01-01T00:00:00.000Z",
        native=False,
    )


def _client(sleeps: list[float], *, auth: object = None, attempts: int = 4) -> DriveClient:
    return DriveClient(
        auth or TokenAuth("tok"),  # type: ignore[arg-type]
        base_url=BASE,
        retry=RetryPolicy(max_attempts=attempts, base_delay=0.01, max_delay=0.5),
        sleep=sleeps.append,
        seed=3,
    )


def _api_error(status: int, reason: str, message: str) -> dict[str, object]:
    return {"error": {"code": status, "message": message, "errors": [{"reason": reason}]}}


@responses.activate
def test_media_download_retries_rate_limits_and_honours_retry_after() -> None:
    url = f"{BASE}/files/f1"
    responses.get(
        url,
        json=_api_error(429, "rateLimitExceeded", "slow"),
        status=429,
        headers={"Retry-After": "0.25"},
    )
    responses.get(url, json=_api_error(403, "userRateLimitExceeded", "slow"), status=403)
    responses.get(url, body=BODY)
    sleeps: list[float] = []
    client = _client(sleeps)
    dest = io.BytesIO()
    result = client.fetch(_file(), dest)
    assert dest.getvalue() == BODY and result.bytes_written == len(BODY)
    assert result.attempts == 3 and result.md5 == hashlib.md5(BODY).hexdigest()
    assert sleeps[0] == 0.25 and 0.0 <= sleeps[1] <= 0.02
    assert client.stats.retries == {"429": 1, "rate_limit_403": 1}
    assert client.stats.max_attempts == 3 and client.stats.requests == 3
    sent = responses.calls[-1].request
    assert "alt=media" in sent.url and "acknowledgeAbuse=false" in sent.url
    assert sent.headers["Authorization"] == "Bearer tok"


@responses.activate
def test_checksum_mismatch_is_retried_after_rewinding_the_destination() -> None:
    url = f"{BASE}/files/f1"
    corrupt = bytes([BODY[0] ^ 0xFF]) + BODY[1:]
    responses.get(url, body=corrupt)
    responses.get(url, body=BODY)
    dest = io.BytesIO(b"HEADER")
    dest.seek(6)  # the fetch writes from here on; the header must survive the retry
    result = _client([]).fetch(_file(), dest)
    assert dest.getvalue() == b"HEADER" + BODY and result.attempts == 2


@responses.activate
def test_persistent_mismatch_ends_as_checksum_error_after_the_attempt_bound() -> None:
    responses.get(f"{BASE}/files/f1", body=BODY)
    client = _client([], attempts=3)
    with pytest.raises(DriveError) as info:
        client.fetch(_file(md5="0" * 32), io.BytesIO())
    assert info.value.reason == "checksumMismatch"
    assert len(responses.calls) == 3 and client.stats.max_attempts == 3


@responses.activate
def test_short_body_is_retried() -> None:
    responses.get(f"{BASE}/files/f1", body=BODY[:-10])
    responses.get(f"{BASE}/files/f1", body=BODY)
    client = _client([])
    client.fetch(_file(), io.BytesIO())
    assert client.stats.retries == {"truncated": 1}


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (400, "badRequest"),
        (401, "authError"),
        (404, "notFound"),
        (403, "insufficientFilePermissions"),
    ],
)
@responses.activate
def test_final_errors_fail_at_once_with_the_api_message(status: int, reason: str) -> None:
    responses.get(
        f"{BASE}/files/f1", json=_api_error(status, reason, "the API says no"), status=status
    )
    sleeps: list[float] = []
    client = _client(sleeps)
    with pytest.raises(DriveError) as info:
        client.fetch(_file(), io.BytesIO())
    assert (info.value.status, info.value.reason) == (status, reason)
    assert "the API says no" in str(info.value)
    assert len(responses.calls) == 1 and sleeps == [] and client.stats.total_retries == 0


@responses.activate
def test_connection_errors_are_retried_and_never_leak_the_api_key() -> None:
    secret = "AIzaSECRET123"
    responses.get(
        f"{BASE}/files/f1", body=requests.ConnectionError(f"reset on {BASE}?key={secret}")
    )
    responses.get(f"{BASE}/files/f1", body=requests.ConnectionError("reset again"))
    client = _client([], auth=ApiKeyAuth(secret), attempts=2)
    with pytest.raises(DriveError) as info:
        client.fetch(_file(), io.BytesIO())
    assert info.value.reason == "connectionError"
    rendered = f"{info.value} {info.value!r} {client!r} {info.value.__cause__!r}"
    assert secret not in rendered
    assert responses.calls[0].request.url.endswith(f"key={secret}")  # but it was sent


@responses.activate
def test_sheet_export_asks_for_the_chosen_format() -> None:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as book:  # an intact zip passes the xlsx CRC check
        book.writestr("xl/worksheets/sheet1.xml", "<worksheet/>")
    responses.get(f"{BASE}/files/s1/export", body=archive.getvalue())
    sheet = DriveFile(
        "s1",
        "Budget",
        "Budget",
        "application/vnd.google-apps.spreadsheet",
        None,
        None,
        "2024-01-01T00:00:00Z",
        True,
    )
    client = _client([])
    csv_result = client.fetch(sheet, io.BytesIO())
    assert csv_result.exported and csv_result.mime_type == "text/csv"
    client.fetch(sheet, io.BytesIO(), sheet_format="xlsx")
    assert responses.calls[0].request.params == {"mimeType": "text/csv"}
    assert responses.calls[1].request.params == {"mimeType": "text/csv"}  # the second read
    assert "spreadsheetml" in responses.calls[2].request.params["mimeType"]
    assert len(responses.calls) == 3  # the xlsx is verified by its CRCs, read once
    with pytest.raises(ValueError, match="sheet_format"):
        client.fetch(sheet, io.BytesIO(), sheet_format="ods")


def test_skipped_files_are_never_requested() -> None:
    doc = DriveFile(
        "d1",
        "Notes",
        "Notes",
        "application/vnd.google-apps.document",
        None,
        None,
        "",
        True,
        skip_reason="native Google document",
    )
    with responses.RequestsMock() as mock:  # any request would raise ConnectionError
        client = _client([])
        with pytest.raises(DriveError, match="native Google document") as info:
            client.fetch(doc, io.BytesIO())
        assert info.value.reason == "notDownloadable"
        results = list(client.fetch_many([doc], lambda f: io.BytesIO()))
        assert isinstance(results[0][1], DriveError) and not mock.calls


@responses.activate
def test_error_body_message_with_key_is_masked() -> None:
    body = json.dumps(_api_error(400, "badRequest", "bad url https://x/?key=AIzaLEAK&q=1"))
    responses.get(f"{BASE}/files/f1", body=body, status=400)
    with pytest.raises(DriveError) as info:
        _client([]).fetch(_file(), io.BytesIO())
    assert "AIzaLEAK" not in str(info.value) and "key=***" in str(info.value)


@responses.activate
def test_sha256_is_preferred_when_drive_reports_it() -> None:
    url = f"{BASE}/files/f1"
    good = hashlib.sha256(BODY).hexdigest()
    responses.get(url, body=b"x" + BODY[1:])  # same size, wrong bytes
    responses.get(url, body=BODY)
    file = DriveFile(**{**_file(md5="f" * 32).__dict__, "sha256": good})  # md5 is ignored
    client = _client([])
    result = client.fetch(file, io.BytesIO())
    assert result.checksum == f"sha256:{good}" and result.md5 is None
    assert client.stats.retries == {"checksumMismatch": 1}


@responses.activate
def test_read_timeouts_are_retried_with_their_own_label() -> None:
    responses.get(f"{BASE}/files/f1", body=requests.ReadTimeout("read timed out"))
    responses.get(f"{BASE}/files/f1", body=BODY)
    client = _client([])
    assert client.fetch(_file(), io.BytesIO()).attempts == 2
    assert client.stats.retries == {"timeout": 1}


def test_proxy_and_ca_settings_come_from_the_environment_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The session reads proxies and the CA bundle at construction, not on every request."""
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp:3128")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/corp-ca.pem")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    session = _client([])._http.session
    assert session.proxies.get("https") == "http://proxy.corp:3128"
    assert session.verify == "/etc/corp-ca.pem"
    assert session.trust_env is False  # so requests skips its per-request os.environ scan

    monkeypatch.setenv("NO_PROXY", "drive.test")
    assert _client([])._http.session.proxies == {}
