"""Integration: every file arrives byte-identical although 20% of requests are faulted."""

from __future__ import annotations

from pathlib import Path
from typing import IO

from shared.drive import DriveFile, RetryPolicy
from shared.errors import DriveError

MAX_ATTEMPTS = 10  # 0.2**10 ≈ 1e-7 per request: a spurious failure is practically impossible


def test_fetch_many_survives_every_fault_kind(emulator_api, client_for, tmp_path: Path) -> None:
    src = tmp_path / "src"
    out = tmp_path / "out"
    sources = emulator_api.generate_tree(src, 200, min_size=5_000, max_size=50_000, seed=11)
    assert len(sources) == 200
    faults = emulator_api.FaultConfig(
        rate=0.2, kinds=("rate_limit_403", "429", "503", "reset", "truncate", "corrupt"), seed=5
    )
    with emulator_api.DriveEmulator(src, faults=faults) as emu:
        retry = RetryPolicy(max_attempts=MAX_ATTEMPTS, base_delay=0.002, max_delay=0.02)
        # The 403s/429s here are random, not load: the adaptive limiter would rightly slow the
        # client to its 10/s floor for seconds. It has its own test (test_throttle_emulator).
        client = client_for(emu.url, retry=retry, adaptive_backoff=False)

        def open_dest(file: DriveFile) -> IO[bytes]:
            path = out / file.path
            path.parent.mkdir(parents=True, exist_ok=True)
            return path.open("w+b")

        results = list(client.fetch_many(client.walk(emu.root_id), open_dest))
        emulator_stats = emu.stats.snapshot()
    errors = [(f.path, r) for f, r in results if isinstance(r, DriveError)]
    assert errors == []
    assert len(results) == 200
    for source in sources:
        rel = source.relative_to(src).as_posix()
        assert (out / rel).read_bytes() == source.read_bytes(), rel
    stats = client.stats.snapshot()
    injected = emulator_stats["faults"]
    assert set(injected) == {"rate_limit_403", "429", "503", "reset", "truncate", "corrupt"}
    # Every injected fault cost exactly one retry, and nothing else did.
    assert sum(stats["retries"].values()) == sum(injected.values()) > 0
    assert stats["retries"]["checksumMismatch"] == injected["corrupt"]
    assert 1 < stats["max_attempts"] <= MAX_ATTEMPTS
    assert stats["requests"] == sum(emulator_stats["requests"].values())
