"""What every campaign scenario shares: outcomes, sizes, destinations on three backends, and
the one way of counting (read every output back and compare rows with the sources).

Every scenario counts *inputs* (files or events), never keys, through
:func:`tests.reliability.lake.audit`: an input is written when each of its rows is in the
destination exactly once, lost when a row is missing (or wrong), duplicated when a row is there
twice; rows no input has are stale. The same count in every row of the table.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack.drive_emulator import DriveEmulator, FaultConfig
from devstack.servers import GcsEmulator, MotoServer
from shared.config import Pipeline, parse_config
from shared.drive.retry import RetryPolicy
from shared.storage import Storage, open_storage
from tests.reliability.lake import Row, audit, leftover_temp_files

REPO = Path(__file__).resolve().parents[1]
MOTO_PORT_ENV = "CAMPAIGN_MOTO_PORT"  # the runner's shared moto_server
GCS_PORT_ENV = "CAMPAIGN_GCS_PORT"  # the runner's shared GCS emulator, when gcs is chosen
BACKENDS = ("local", "s3", "gcs")
FAST_RETRY = RetryPolicy(max_attempts=4, base_delay=0.005, max_delay=0.05)
WAIT_LIMIT = 120.0  # the cap on every wait in a scenario (a hung scenario fails, never hangs)


@dataclass
class Outcome:
    """One scenario's counts. ``lost``, ``duplicates``, ``stale`` and ``problems`` must be
    empty/0; ``leftovers`` (temp files, open multipart uploads) is reported, ``None`` where
    the backend cannot list them (GCS resumable sessions)."""

    inputs: int
    written: int
    failed_expected: int = 0
    lost: int = 0
    duplicates: int = 0
    stale: int = 0
    leftovers: int | None = 0
    note: str = ""
    problems: list[str] = field(default_factory=list)

    def add(self, other: Outcome) -> None:
        """Sum ``other`` into this one (a scenario made of several trials)."""
        self.inputs += other.inputs
        self.written += other.written
        self.failed_expected += other.failed_expected
        self.lost += other.lost
        self.duplicates += other.duplicates
        self.stale += other.stale
        if self.leftovers is not None:
            self.leftovers = None if other.leftovers is None else self.leftovers + other.leftovers
        self.problems += other.problems

    def check(self, ok: bool, problem: str) -> None:
        """Record ``problem`` unless ``ok``."""
        if not ok:
            self.problems.append(problem)


@dataclass(frozen=True)
class Sizes:
    """How big each scenario runs: short (CI) or full (on demand)."""

    full: bool
    files: int
    many_files: int
    events: int
    burst_events: int
    big_csv_mb: int
    exports: int
    kill_points: int  # how many of the crash points each backend's kill row visits

    @classmethod
    def pick(cls, full: bool) -> Sizes:
        if full:
            return cls(True, 200, 10_000, 100, 200, 1000, 100, 6)
        return cls(False, 24, 200, 16, 30, 12, 25, 4)


# ---- destinations ---------------------------------------------------------------------------
@dataclass
class Dest:
    """A fresh destination on one backend, and how to count what killed writers left there."""

    backend: str
    url: str
    storage: Storage
    _moto: MotoServer | None = None
    _bucket: str | None = None

    def leftovers(self) -> int | None:
        """Temp files (local) or open multipart uploads (S3); ``None`` on GCS, whose resumable
        sessions cannot be listed (they expire after a week, and are never visible)."""
        if self.backend == "local":
            return len(leftover_temp_files(Path(self.url)))
        if self.backend == "s3" and self._moto is not None:
            uploads = self._moto.client().list_multipart_uploads(Bucket=self._bucket)
            return len(uploads.get("Uploads", []))
        return None


def shared_moto() -> MotoServer:
    """The runner's moto_server (its port in ``CAMPAIGN_MOTO_PORT``), with the env set."""
    server = MotoServer(port=int(os.environ[MOTO_PORT_ENV]))
    os.environ.update(server.env())
    return server


def destination(backend: str, work: Path, purpose: str) -> Dest:
    """A new, empty destination for ``purpose`` on ``backend`` (a fresh bucket for S3/GCS)."""
    name = f"campaign-{purpose}-{uuid.uuid4().hex[:8]}"
    if backend == "local":
        url = str(work / name)
        return Dest(backend, url, open_storage(url))
    if backend == "s3":
        moto = shared_moto()
        bucket = moto.create_bucket(name)
        url = f"s3://{bucket}/dest"
        return Dest(backend, url, open_storage(url), moto, bucket)
    if backend == "gcs":
        gcs = GcsEmulator(port=int(os.environ[GCS_PORT_ENV]))
        os.environ.update(gcs.env())
        bucket = gcs.create_bucket(name)
        url = f"gs://{bucket}/dest"
        return Dest(backend, url, open_storage(url))
    raise ValueError(f"unknown backend {backend!r}; choose from {BACKENDS}")


@contextmanager
def drive_folder(faults: FaultConfig | None = None) -> Iterator[tuple[Path, DriveEmulator]]:
    """A temporary folder served by a Drive emulator, with the env pointing at it."""
    with tempfile.TemporaryDirectory(prefix="campaign-") as tmp:
        root = Path(tmp) / "drive"
        root.mkdir()
        with DriveEmulator(root, faults=faults) as emulator:
            os.environ["DRIVE_API_URL"] = emulator.url
            os.environ["DRIVE_ACCESS_TOKEN"] = "campaign-token"
            yield root, emulator


def pipeline_for(dest_url: str, folder_id: str, **body: Any) -> Pipeline:
    """The campaign's pipeline ``rel``: ``folder_id`` into ``dest_url``, plus ``body``."""
    spec = {"source": {"folder_id": folder_id}, "output": {"url": dest_url}, **body}
    return parse_config({"pipelines": {"rel": spec}}).pipelines["rel"]


# ---- sources and the count ------------------------------------------------------------------
def fill(root: Path, count: int, rows: int = 20, per_folder: int = 100) -> dict[str, list[Row]]:
    """``count`` small CSVs in folders of ``per_folder``; each row names its file. Their rows."""
    expected = {}
    for n in range(count):
        folder = root / f"d{n // per_folder:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        tag = f"f{n:05d}"
        (folder / f"{tag}.csv").write_text(
            "file,row\n" + "".join(f"{tag},{i}\n" for i in range(rows))
        )
        expected[tag] = [(tag, str(i)) for i in range(rows)]
    return expected


def settle(
    dest: Storage,
    expected: Mapping[str, Iterable[Row]],
    *,
    failed_expected: int = 0,
    pipeline: str = "rel",
    leftovers: int | None = 0,
) -> Outcome:
    """Read every output of ``dest`` back and count inputs against ``expected``."""
    lake = audit(dest, expected, pipeline)
    outcome = Outcome(
        inputs=len(expected) + failed_expected,
        written=lake.correct,
        failed_expected=failed_expected,
        lost=len(lake.lost) + len(lake.missing_claims) + len(lake.unreadable),
        duplicates=len(lake.duplicated),
        stale=lake.unexpected_rows,
        leftovers=leftovers,
    )
    outcome.check(not lake.missing_claims, f"state claims missing {lake.missing_claims[:3]}")
    outcome.check(not lake.unreadable, f"unreadable outputs {lake.unreadable[:3]}")
    return outcome
