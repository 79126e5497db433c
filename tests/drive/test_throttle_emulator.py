"""Integration: against the emulator's request quota, adaptive backoff slows the whole client."""

from __future__ import annotations

import random
from pathlib import Path
from typing import IO, Any

from shared.drive import DriveFile, RetryPolicy
from shared.errors import DriveError

FILES = 120
QPS = 40.0
# Tiny backoff, many attempts: without the shared limiter, each thread hammers the quota.
RETRY = RetryPolicy(max_attempts=80, base_delay=0.005, max_delay=0.05)


def _sync(emulator_api, client_for, src: Path, out: Path, adaptive: bool) -> dict[str, Any]:
    faults = emulator_api.FaultConfig(rate_limit_qps=QPS, latency_s=0.01)
    with emulator_api.DriveEmulator(src, faults=faults) as emu:
        client = client_for(emu.url, retry=RETRY, adaptive_backoff=adaptive)

        def open_dest(file: DriveFile) -> IO[bytes]:
            path = out / file.path
            path.parent.mkdir(parents=True, exist_ok=True)
            return path.open("w+b")

        results = list(client.fetch_many(client.walk(emu.root_id), open_dest))
        errors = [(f.path, r) for f, r in results if isinstance(r, DriveError)]
        assert errors == []
        assert len(results) == FILES
        return {
            "limited": emu.stats.snapshot()["faults"].get("qps_limit", 0),
            "retries": client.stats.snapshot()["retries"],
            "decreases": client.limiter.stats.decreases if client.limiter else 0,
        }


def test_adaptive_backoff_keeps_rate_limit_answers_few(
    emulator_api, client_for, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    rng = random.Random(3)
    sources = {}
    for i in range(FILES):
        rel = f"d{i % 4}/f{i:03d}.bin"
        sources[rel] = rng.randbytes(rng.randint(100, 4000))
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(sources[rel])

    adaptive = _sync(emulator_api, client_for, src, tmp_path / "adaptive", True)
    fixed = _sync(emulator_api, client_for, src, tmp_path / "fixed", False)

    for name in ("adaptive", "fixed"):
        for rel, data in sources.items():
            assert (tmp_path / name / rel).read_bytes() == data, (name, rel)
    # Each 403 the emulator sent cost the client exactly one retry.
    assert adaptive["retries"].get("rate_limit_403", 0) == adaptive["limited"]
    assert fixed["retries"].get("rate_limit_403", 0) == fixed["limited"]
    # Without the shared limiter the threads keep running into the quota (hundreds of 403s
    # on an idle machine; 52 seen once on a loaded one, whose stalled threads refill the
    # bucket: the baseline only has to show the quota biting)...
    assert fixed["limited"] > FILES // 4, fixed
    # ...with it, the first 403s slow every thread down and few more follow.
    assert adaptive["decreases"] >= 1
    assert adaptive["limited"] <= FILES // 6, adaptive
    assert adaptive["limited"] * 4 < fixed["limited"]
