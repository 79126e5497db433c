"""Every fault kind is observable by a real HTTP client, and counted."""

from __future__ import annotations

import hashlib
import time

import pytest
import requests

from devstack.drive_emulator import DriveEmulator, FaultConfig
from tests.drive_emulator.helpers import BIG_SIZE, big_bytes, call, error_of


def only(kind: str, **extra: object) -> FaultConfig:
    return FaultConfig(rate=1.0, kinds=(kind,), seed=1, **extra)  # type: ignore[arg-type]


def media(emu: DriveEmulator, http: requests.Session) -> requests.Response:
    return call(http, emu, f"files/{emu.id_for('big/blob_3.bin')}", alt="media")


def test_rate_limit_403_is_a_usage_limits_error(
    fresh_emu: DriveEmulator, http: requests.Session
) -> None:
    fresh_emu.set_faults(only("rate_limit_403", retry_after_s=2))
    response = call(http, fresh_emu, "files")
    assert response.status_code == 403
    detail = error_of(response)
    assert detail["domain"] == "usageLimits"
    assert detail["reason"] in ("userRateLimitExceeded", "rateLimitExceeded")
    assert response.headers["Retry-After"] == "2"
    assert fresh_emu.stats.snapshot()["faults"] == {"rate_limit_403": 1}


@pytest.mark.parametrize(
    ("kind", "status", "reason"), [("429", 429, "rateLimitExceeded"), ("503", 503, "backendError")]
)
def test_status_faults(
    fresh_emu: DriveEmulator, http: requests.Session, kind: str, status: int, reason: str
) -> None:
    fresh_emu.set_faults(only(kind))
    for response in (call(http, fresh_emu, "files"), media(fresh_emu, http)):
        assert response.status_code == status
        assert error_of(response)["reason"] == reason
    fresh_emu.set_faults(FaultConfig())
    assert call(http, fresh_emu, "files").status_code == 200  # switchable at runtime


def test_reset_drops_the_connection(fresh_emu: DriveEmulator, http: requests.Session) -> None:
    fresh_emu.set_faults(only("reset"))
    with pytest.raises(requests.ConnectionError):
        call(http, fresh_emu, "files")
    with pytest.raises(requests.ConnectionError):
        media(fresh_emu, http)
    fresh_emu.set_faults(FaultConfig())
    assert call(http, fresh_emu, "files").status_code == 200  # the pool recovers
    assert fresh_emu.stats.snapshot()["faults"] == {"reset": 2}


def test_truncated_body_is_a_short_read(fresh_emu: DriveEmulator, http: requests.Session) -> None:
    fresh_emu.set_faults(only("truncate"))
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        media(fresh_emu, http)
    url = f"{fresh_emu.url}/files/{fresh_emu.id_for('big/blob_3.bin')}"
    response = http.get(url, params={"alt": "media", "key": "k"}, stream=True, timeout=30)
    assert response.headers["Content-Length"] == str(BIG_SIZE)
    received = bytearray()
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        for chunk in response.iter_content(8192):
            received += chunk
    assert 0 < len(received) < BIG_SIZE
    assert bytes(received) == big_bytes(3)[: len(received)]
    # JSON endpoints never get a media-only fault
    assert call(http, fresh_emu, "files").status_code == 200


def test_corrupt_body_fails_the_md5_check(fresh_emu: DriveEmulator, http: requests.Session) -> None:
    fresh_emu.set_faults(only("corrupt"))
    meta = call(
        http, fresh_emu, f"files/{fresh_emu.id_for('big/blob_3.bin')}", fields="md5Checksum"
    )
    response = media(fresh_emu, http)
    assert response.status_code == 200 and len(response.content) == BIG_SIZE
    assert hashlib.md5(response.content).hexdigest() != meta.json()["md5Checksum"]
    export = call(
        http,
        fresh_emu,
        f"files/{fresh_emu.id_for('targets.gsheet.csv')}/export",
        mimeType="text/csv",
    )
    assert export.content != (fresh_emu.tree.root / "targets.gsheet.csv").read_bytes()


def test_fault_rate_hits_a_share_of_requests(
    fresh_emu: DriveEmulator, http: requests.Session
) -> None:
    fresh_emu.set_faults(FaultConfig(rate=0.3, kinds=("503",), seed=42))
    fresh_emu.reset_stats()
    statuses = [call(http, fresh_emu, "files", fields="files(id)").status_code for _ in range(60)]
    failures = statuses.count(503)
    assert 5 <= failures <= 35 and statuses.count(200) == 60 - failures
    assert fresh_emu.stats.snapshot()["faults"] == {"503": failures}
    assert fresh_emu.stats.snapshot()["requests"] == {"list": 60}


def test_a_seed_gives_each_request_the_same_faults_in_any_order(
    fresh_emu: DriveEmulator, http: requests.Session
) -> None:
    """Threads send requests in a different order every run; a seed must still reproduce."""
    sizes = list(range(1, 31))

    def statuses(order: list[int]) -> dict[int, list[int]]:
        fresh_emu.set_faults(FaultConfig(rate=0.4, kinds=("503",), seed=7))
        seen: dict[int, list[int]] = {n: [] for n in order}
        for n in order + order:  # each twice: the second sending is a draw of its own
            seen[n].append(call(http, fresh_emu, "files", pageSize=n).status_code)
        return seen

    forward = statuses(sizes)
    backward = statuses(sizes[::-1])
    assert forward == backward
    first_sendings = [codes[0] for codes in forward.values()]
    assert 503 in first_sendings and 200 in first_sendings  # the rate still applies
    # Another seed is another draw.
    fresh_emu.set_faults(FaultConfig(rate=0.4, kinds=("503",), seed=8))
    other = {n: call(http, fresh_emu, "files", pageSize=n).status_code for n in sizes}
    assert other != {n: codes[0] for n, codes in forward.items()}


def test_qps_limit_answers_user_rate_limit(
    fresh_emu: DriveEmulator, http: requests.Session
) -> None:
    fresh_emu.set_faults(FaultConfig(rate_limit_qps=1.0))
    statuses = [call(http, fresh_emu, "files", fields="files(id)").status_code for _ in range(5)]
    assert statuses[0] == 200 and 403 in statuses
    limited = call(http, fresh_emu, "files")
    assert limited.status_code == 403 and error_of(limited)["reason"] == "userRateLimitExceeded"
    assert fresh_emu.stats.snapshot()["faults"]["qps_limit"] >= 2


def test_fault_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="unknown fault kinds"):
        FaultConfig(kinds=("meteor",))
    with pytest.raises(ValueError, match="rate"):
        FaultConfig(rate=1.5)
    with pytest.raises(ValueError, match="bandwidth"):
        FaultConfig(bandwidth_bps=0)


def test_latency_and_bandwidth_slow_responses_down(
    fresh_emu: DriveEmulator, http: requests.Session
) -> None:
    """Lower bounds only: throttling can make a response slower, never faster."""
    fresh_emu.set_faults(FaultConfig(latency_s=0.25))
    started = time.monotonic()
    assert call(http, fresh_emu, "files", fields="files(id)").status_code == 200
    assert time.monotonic() - started >= 0.25
    fresh_emu.set_faults(FaultConfig(bandwidth_bps=1_000_000))
    started = time.monotonic()
    response = media(fresh_emu, http)
    assert time.monotonic() - started >= 0.9 * BIG_SIZE / 1_000_000
    assert response.content == big_bytes(3)
