"""The dependency lock files: what each one pins, and whether each cloud gets only its imports.

Humans edit the ``requirements/*.in`` files (direct dependencies); ``make lock`` resolves them
with ``uv pip compile --generate-hashes`` into hash-pinned locks, every transitive dependency
included:

=================================  ==========================================================
``requirements/dev.txt``           ``dev.in``: both clouds' runtime plus the tools; ``make setup``
``gcp_functions/requirements.txt`` ``gcp.in`` (versions constrained to dev.txt): what Cloud
                                   Build installs for the Cloud Functions
``requirements/lambda-compat.txt`` ``lambda-compat.in`` with the layer's pandas/numpy/pyarrow
                                   (``lambda-layer.txt``) as overrides: ``make test-lambda-compat``
=================================  ==========================================================
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = REPO_ROOT / "requirements"
GCP_LOCK = REPO_ROOT / "gcp_functions" / "requirements.txt"
DEV_LOCK = REQUIREMENTS / "dev.txt"
# Never in a GCP function: the AWS SDK (~34 MB) is imported by the AWS code paths only.
NOT_ON_GCP = ("boto3", "botocore", "s3transfer")


@dataclass(frozen=True)
class Pin:
    """One locked distribution."""

    version: str
    hashes: tuple[str, ...]


def normalize(name: str) -> str:
    """PEP 503 name: lower case, runs of ``-_.`` as one ``-``, extras dropped."""
    return re.sub(r"[-_.]+", "-", name.split("[", 1)[0]).lower().strip()


def logical_lines(path: Path) -> list[str]:
    """The file's requirement lines, continuations joined and comments dropped."""
    text = path.read_text(encoding="utf-8").replace("\\\n", " ")
    lines = (raw.split(" #", 1)[0].strip() for raw in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def read_lock(path: Path) -> dict[str, Pin]:
    """``name -> Pin`` of a lock (or ``.in``) file; ``-r``/``-c`` lines are not followed."""
    pins: dict[str, Pin] = {}
    for line in logical_lines(path):
        if line.startswith("-"):
            continue
        spec, *options = line.split()
        name, _, version = spec.partition("==")
        hashes = tuple(o.split("=", 1)[1] for o in options if o.startswith("--hash="))
        pins[normalize(name)] = Pin(version.split(";", 1)[0].strip(), hashes)
    return pins


def direct_pins(path: Path) -> dict[str, str]:
    """The ``==`` pins of an ``.in`` file and of the ``.in`` files it includes with ``-r``."""
    pins: dict[str, str] = {}
    for line in logical_lines(path):
        if line.startswith("-r "):
            pins.update(direct_pins(path.parent / line[3:].strip()))
        elif not line.startswith("-"):
            name, _, version = line.partition("==")
            pins[normalize(name)] = version.strip()
    return pins


def lock_problems(
    lock: Path,
    source: Path,
    *,
    reference: Path | None = DEV_LOCK,
    overrides: Path | None = None,
) -> list[str]:
    """What is wrong with ``lock`` as the resolution of ``source`` (empty when nothing).

    Every line pinned with ``==`` and hashed; every direct pin of ``source`` (or of
    ``overrides``, which win) present at its version; with ``reference``, every version equal
    to the reference lock's (the tested one).
    """
    locked = read_lock(lock)
    wanted = direct_pins(source) | (direct_pins(overrides) if overrides else {})
    problems = [f"{n}: not pinned with ==" for n, p in locked.items() if not p.version]
    problems += [f"{n}=={p.version}: no --hash" for n, p in locked.items() if not p.hashes]
    for name, version in wanted.items():
        if name not in locked:
            problems.append(f"{name}: in {source.name} but not in {lock.name}; run `make lock`")
        elif version and locked[name].version != version:
            got = locked[name].version
            problems.append(f"{name}=={got} but {source.name} says {version}; run `make lock`")
    if reference is not None:
        tested = read_lock(reference)
        problems += [
            f"{n}=={p.version} but {reference.name} (tested) has {tested[n].version}"
            for n, p in locked.items()
            if n in tested and tested[n].version != p.version
        ]
    return problems


def gcp_problems(lock: Path = GCP_LOCK) -> list[str]:
    """The GCP functions' lock: complete, hashed, as tested, and without the AWS SDK."""
    problems = lock_problems(lock, REQUIREMENTS / "gcp.in")
    locked = read_lock(lock)
    problems += [f"{n}: the GCP functions never import it" for n in NOT_ON_GCP if n in locked]
    return problems


def all_problems() -> list[str]:
    """Every lock checked against its ``.in`` file (what ``make lock`` ends with)."""
    return [
        *lock_problems(DEV_LOCK, REQUIREMENTS / "dev.in", reference=None),
        *gcp_problems(),
        *lock_problems(
            REQUIREMENTS / "lambda-compat.txt",
            REQUIREMENTS / "lambda-compat.in",
            reference=None,
            overrides=REQUIREMENTS / "lambda-layer.txt",
        ),
    ]
