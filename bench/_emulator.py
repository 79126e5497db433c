"""The Drive emulator as a separate process, for benchmarks: its serving then competes with
the contenders for CPU as a real remote server would not, but never for the GIL."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def emulator_process(root: Path, latency: float, *options: str) -> Iterator[tuple[str, str]]:
    """Serve ``root`` with ``latency`` s per request (plus CLI ``options``);
    yields (api url, root folder id)."""
    command = [sys.executable, "-m", "devstack.drive_emulator", "--root", str(root),
               "--latency", str(latency), "--port", "0", *options]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        found: dict[str, str] = {}
        while len(found) < 2:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"emulator exited early with code {proc.wait()}")
            match = re.match(r"(DRIVE_API_URL|DRIVE_ROOT_ID)=(\S+)", line)
            if match:
                found[match.group(1)] = match.group(2)
        yield found["DRIVE_API_URL"], found["DRIVE_ROOT_ID"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
