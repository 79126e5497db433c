"""drivepipe's own Lambda layer, ``build/aws/layer.zip``, from pinned manylinux wheels.

``python -m deploy.layer [--out build/aws/layer.zip] [--exclude NAME ...]``

The layer holds every third-party package the Lambda code imports (``requirements/aws-layer.txt``,
every package pinned), under ``python/`` as Lambda expects (it unzips layers into ``/opt``, and
``/opt/python`` comes before the runtime's own ``/var/runtime`` on ``sys.path``, so our boto3
wins over the runtime's). It is built the way the AWS SDK for pandas builds its layer, from
wheels instead of compiling Arrow:

- wheels for the Lambda runtime only: ``pip download/install --platform manylinux2014_x86_64
  --implementation cp --python-version 3.11 --only-binary=:all:``;
- no tests, no ``.pyi`` stubs, no bytecode caches, no console scripts, no C/Cython sources;
- no unused pyarrow components (Flight, ORC, the HDFS/GCS/Azure filesystems, the substrait
  binding) and one copy of each ``libarrow_*`` library (wheels carry three names of each);
- boto3/botocore pruned to the services the code calls (:data:`BOTO_SERVICES`);
- every ELF file ``strip --strip-unneeded``, except where the stripped copy would not load
  (libraries auditwheel patched: :func:`load_segments_aligned`);
- then every ELF file is checked against the runtime's glibc/libstdc++ (Amazon Linux 2).

Downloaded wheels are cached in ``build/cache/aws-layer/wheels`` and the built zip under a key
of its inputs, so a second build is a copy.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = REPO_ROOT / "requirements" / "aws-layer.txt"
CACHE_DIR = REPO_ROOT / "build" / "cache" / "aws-layer"
MIB = 1024 * 1024

# The Lambda runtime the layer is for. python3.11 runs on Amazon Linux 2: glibc 2.26 and the
# libstdc++ of GCC 7 (GLIBCXX_3.4.24). manylinux2014 wheels need at most glibc 2.17, which is
# why numpy >= 2.3, pandas 3 and pyarrow >= 21 (manylinux_2_28 wheels only) cannot be used.
LAYER_PYTHON = "3.11"
LAYER_PLATFORM = "manylinux2014_x86_64"
RUNTIME_GLIBC = (2, 26)
RUNTIME_GLIBCXX = (3, 4, 24)

# AWS services the code calls (shared/storage/s3.py, shared/run/fanout/queues.py,
# shared/secrets.py, shared/run/notify/targets.py, shared/storage/catalog/glue.py); sts for role
# credentials. tests/aws/test_layer.py greps the code for client("...") calls so that a new one
# fails there, not in Lambda.
BOTO_SERVICES = ("s3", "sqs", "secretsmanager", "ssm", "sns", "sts", "glue")

# Never used: what the code imports of pyarrow is pyarrow, .parquet (which reads through
# .dataset, hence acero and dataset stay), .csv, .json and .compute. libarrow_substrait stays
# too: libarrow_python links it.
PYARROW_UNUSED = (
    "libarrow_flight.so*",
    "libarrow_python_flight.so*",
    "_flight.*.so",
    "flight.py",
    "_orc.*.so",
    "_dataset_orc.*.so",
    "orc.py",
    "_hdfs.*.so",
    "_gcsfs.*.so",
    "_azurefs.*.so",
    "_substrait.*.so",
    "substrait.py",
    "_pyarrow_cpp_tests.*.so",
    "include",
    "src",
)
NUMPY_UNUSED = ("f2py", "_core/include", "_pyinstaller")
# Anywhere in the tree: sources, stubs and docs that nothing imports.
UNUSED_SUFFIXES = (".pyi", ".pyc", ".pyo", ".pyx", ".pxd", ".pxi", ".h", ".hpp", ".cc", ".cpp")
UNUSED_DIRS = ("tests", "__pycache__")


class LayerError(RuntimeError):
    """The layer could not be built, or would not load on the Lambda runtime."""


@dataclass(frozen=True)
class LayerSpec:
    """What goes into the layer; ``exclude`` leaves distributions out (tests use it)."""

    requirements: Path = REQUIREMENTS
    exclude: frozenset[str] = frozenset()
    boto_services: tuple[str, ...] = BOTO_SERVICES
    python_version: str = LAYER_PYTHON
    platform: str = LAYER_PLATFORM

    def pins(self) -> list[str]:
        """The requirement lines, less the excluded distributions."""
        excluded = {normalize(name) for name in self.exclude}
        lines = []
        for raw in self.requirements.read_text().splitlines():
            line = raw.split("#", 1)[0].strip()
            if line and normalize(re.split(r"[=<>!~\[ ;]", line, maxsplit=1)[0]) not in excluded:
                lines.append(line)
        return lines

    def key(self) -> str:
        """A digest of everything the built zip depends on, this module's code included."""
        digest = hashlib.sha256()
        for part in (
            *self.pins(),
            *self.boto_services,
            self.python_version,
            self.platform,
            Path(__file__).read_text(),
        ):
            digest.update(part.encode() + b"\0")
        return digest.hexdigest()[:16]

    def pip_target_options(self) -> list[str]:
        """The options that make pip choose wheels for the Lambda runtime, not this machine."""
        return [
            "--platform",
            self.platform,
            "--implementation",
            "cp",
            "--python-version",
            self.python_version,
            "--only-binary=:all:",
        ]


@dataclass
class LayerReport:
    """A built layer and its measured sizes."""

    zip_path: Path
    zipped_bytes: int
    unzipped_bytes: int
    top_level: dict[str, int]
    pruned_bytes: int = 0
    stripped_bytes: int = 0
    cached: bool = False
    excluded: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """Human-readable figures."""
        biggest = sorted(self.top_level.items(), key=lambda kv: -kv[1])[:6]
        saved = (self.pruned_bytes + self.stripped_bytes) / MIB
        return [
            f"layer.zip                {self.zipped_bytes / MIB:8.2f} MiB zipped "
            "(over 50 MiB: publish it from S3)",
            f"layer unzipped           {self.unzipped_bytes / MIB:8.2f} MiB "
            f"(pruning and strip saved {saved:.1f} MiB){' [cached]' if self.cached else ''}",
            "largest in layer: " + ", ".join(f"{n} {b / MIB:.1f}" for n, b in biggest),
        ]


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares it."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _pip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", *args, "--disable-pip-version-check"],
        capture_output=True,
        text=True,
    )


def download_wheels(spec: LayerSpec, wheel_dir: Path, requirements: Path) -> None:
    """Fill ``wheel_dir`` with the pinned wheels; offline when they are all cached already."""
    wheel_dir.mkdir(parents=True, exist_ok=True)
    common = ["download", "-r", str(requirements), "-d", str(wheel_dir), "--quiet"]
    common += spec.pip_target_options()
    if _pip(*common, "--no-index", "--find-links", str(wheel_dir)).returncode == 0:
        return
    done = _pip(*common)
    if done.returncode != 0:
        raise LayerError(f"pip download failed:\n{done.stdout}\n{done.stderr}".strip())


def install(spec: LayerSpec, wheel_dir: Path, requirements: Path, target: Path) -> None:
    """``pip install --target`` from the cached wheels only (no index, no bytecode)."""
    done = _pip(
        "install",
        "-r",
        str(requirements),
        "--no-index",
        "--find-links",
        str(wheel_dir),
        "--target",
        str(target),
        "--no-compile",
        "--quiet",
        *spec.pip_target_options(),
    )
    if done.returncode != 0:
        raise LayerError(f"pip install failed:\n{done.stdout}\n{done.stderr}".strip())


def _size(path: Path) -> int:
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() or p.is_symlink())


def _remove(paths: Iterable[Path]) -> int:
    removed = 0
    for path in paths:
        if not (path.exists() or path.is_symlink()):
            continue
        removed += _size(path)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    return removed


def _duplicate_libraries(directory: Path) -> list[Path]:
    """``libX.so`` and ``libX.so.N.0.0`` beside ``libX.so.N`` (the name binaries link to)."""
    extra = []
    for soname in directory.glob("lib*.so.*"):
        if re.fullmatch(r"lib[\w-]+\.so\.\d+", soname.name):
            stem = soname.name.rsplit(".so.", 1)[0] + ".so"
            extra += [p for p in directory.glob(stem + "*") if p != soname]
    return extra


def prune(python_dir: Path, spec: LayerSpec) -> int:
    """Remove what nothing imports; returns the bytes removed."""
    removed = _remove([python_dir / "bin"])
    removed += _remove(
        sorted(
            (p for p in python_dir.rglob("*") if p.is_dir() and p.name in UNUSED_DIRS),
            key=lambda p: len(p.parts),
        )
    )
    removed += _remove(p for p in python_dir.rglob("*") if p.suffix in UNUSED_SUFFIXES)
    pyarrow = python_dir / "pyarrow"
    if pyarrow.is_dir():
        removed += _remove(p for pattern in PYARROW_UNUSED for p in pyarrow.glob(pattern))
        removed += _remove(_duplicate_libraries(pyarrow))
    removed += _remove(python_dir / "numpy" / name for name in NUMPY_UNUSED)
    keep = set(spec.boto_services)
    for data in (python_dir / "botocore" / "data", python_dir / "boto3" / "data"):
        if data.is_dir():
            removed += _remove(p for p in data.iterdir() if p.is_dir() and p.name not in keep)
            removed += _remove(data.rglob("examples-1.json"))
    removed += _remove([python_dir / "boto3" / "examples"])
    return removed


def elf_files(root: Path) -> list[Path]:
    """Every regular ELF file under ``root``."""
    found = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as handle:
                if handle.read(4) == b"\x7fELF":
                    found.append(path)
    return found


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise LayerError(f"{name} not found: apt-get install binutils")
    return found


def load_segments_aligned(path: Path) -> bool:
    """True when every PT_LOAD segment of a 64-bit ELF file satisfies the loader's
    ``(p_vaddr - p_offset) % p_align == 0`` (else: "ELF load command address/offset not
    page-aligned"). ``strip`` breaks this on libraries that auditwheel rewrote with patchelf
    (numpy.libs' OpenBLAS and libgfortran)."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return True  # not a 64-bit little-endian ELF: nothing of ours to check
    (phoff,) = struct.unpack_from("<Q", data, 32)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    for index in range(phnum):
        kind, _, offset, vaddr, _, _, _, align = struct.unpack_from(
            "<IIQQQQQQ", data, phoff + index * phentsize
        )
        if kind == 1 and align > 1 and (vaddr - offset) % align:
            return False
    return True


def strip_shared_objects(python_dir: Path) -> tuple[int, list[str]]:
    """``strip --strip-unneeded`` every ELF file whose stripped copy still loads.

    Returns the bytes saved and the files left as they were (their stripped copy would have
    misaligned load segments).
    """
    strip = _tool("strip")
    saved = 0
    kept: list[str] = []
    for path in elf_files(python_dir):
        stripped = path.with_name(path.name + ".stripped")
        done = subprocess.run(
            [strip, "--strip-unneeded", "-o", str(stripped), str(path)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            stripped.unlink(missing_ok=True)
            raise LayerError(f"strip failed on {path}: {done.stderr.strip()}")
        if not load_segments_aligned(stripped):
            stripped.unlink()
            kept.append(str(path.relative_to(python_dir)))
            continue
        saved += path.stat().st_size - stripped.stat().st_size
        shutil.copymode(path, stripped)
        stripped.replace(path)
    return saved, kept


def _versions(text: str, prefix: str) -> set[tuple[int, ...]]:
    return {
        tuple(int(n) for n in match.split("."))
        for match in re.findall(rf"\b{prefix}_(\d+(?:\.\d+)+)\b", text)
    }


def runtime_incompatible(python_dir: Path) -> dict[str, str]:
    """ELF files that need a newer glibc or libstdc++ than the Lambda runtime has."""
    readelf = _tool("readelf")
    bad: dict[str, str] = {}
    for path in elf_files(python_dir):
        done = subprocess.run(
            [readelf, "--version-info", "--wide", str(path)], capture_output=True, text=True
        )
        needs = done.stdout.split("Version needs section", 1)[-1]
        glibc = max(_versions(needs, "GLIBC"), default=(0,))
        glibcxx = max(_versions(needs, "GLIBCXX"), default=(0,))
        if glibc > RUNTIME_GLIBC or glibcxx > RUNTIME_GLIBCXX:
            name = str(path.relative_to(python_dir))
            bad[name] = "needs " + ", ".join(
                f"{lib} {'.'.join(map(str, v))}"
                for lib, v in (("GLIBC", glibc), ("GLIBCXX", glibcxx))
                if v > (0,)
            )
    return bad


def write_zip(root: Path, zip_path: Path) -> None:
    """Zip ``root``'s contents reproducibly (sorted, fixed timestamps, modes kept)."""
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    partial = zip_path.with_name(zip_path.name + ".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for path in sorted(root.rglob("*")):
            if not path.is_file():
                continue
            info = zipfile.ZipInfo(str(path.relative_to(root)), date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = (path.stat().st_mode & 0o777 | 0o100000) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with path.open("rb") as source, archive.open(info, "w") as sink:
                shutil.copyfileobj(source, sink, 1024 * 1024)
    partial.replace(zip_path)


def measure(zip_path: Path) -> tuple[int, dict[str, int]]:
    """Unzipped bytes of ``zip_path`` and per top-level package (under ``python/`` in a layer)."""
    top: dict[str, int] = {}
    total = 0
    with zipfile.ZipFile(zip_path) as archive:
        for info in archive.infolist():
            total += info.file_size
            parts = info.filename.split("/")
            head = parts[1] if parts[0] == "python" and len(parts) > 1 else parts[0]
            if head.endswith((".dist-info", ".libs")):
                head = head.split("-", 1)[0].removesuffix(".libs")
            head = head.removesuffix(".py")
            top[head] = top.get(head, 0) + info.file_size
    return total, top


@contextlib.contextmanager
def _locked(cache_dir: Path) -> Iterator[None]:
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_layer(
    out: Path, spec: LayerSpec | None = None, cache_dir: Path = CACHE_DIR
) -> LayerReport:
    """Build (or copy from the cache) the layer zip for ``spec`` to ``out``."""
    spec = spec or LayerSpec()
    cached_zip = cache_dir / f"layer-{spec.key()}.zip"
    cached_info = cached_zip.with_suffix(".json")
    with _locked(cache_dir):
        cached = cached_zip.exists() and cached_info.exists()
        if not cached:
            _build_into_cache(spec, cache_dir, cached_zip, cached_info)
            _forget_old_builds(cache_dir)
        info = json.loads(cached_info.read_text())
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.resolve() != cached_zip.resolve():
        shutil.copyfile(cached_zip, out)
    unzipped, top = measure(out)
    return LayerReport(
        out,
        out.stat().st_size,
        unzipped,
        top,
        pruned_bytes=info["pruned_bytes"],
        stripped_bytes=info["stripped_bytes"],
        cached=cached,
        excluded=sorted(spec.exclude),
    )


KEEP_BUILDS = 4  # the full layer and the tests' variants, across a change or two


def _forget_old_builds(cache_dir: Path) -> None:
    builds = sorted(cache_dir.glob("layer-*.zip"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in builds[KEEP_BUILDS:]:
        old.unlink()
        old.with_suffix(".json").unlink(missing_ok=True)


def _build_into_cache(spec: LayerSpec, cache_dir: Path, zip_path: Path, info: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="drivepipe-layer-") as tmp:
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text("\n".join(spec.pins()) + "\n")
        wheels = cache_dir / "wheels"
        download_wheels(spec, wheels, requirements)
        python_dir = Path(tmp) / "layer" / "python"
        install(spec, wheels, requirements, python_dir)
        pruned = prune(python_dir, spec)
        stripped, unstripped = strip_shared_objects(python_dir)
        bad = runtime_incompatible(python_dir)
        if bad:
            listed = "\n".join(f"  {name}: {why}" for name, why in sorted(bad.items()))
            raise LayerError(
                f"these files would not load on Lambda {spec.python_version} (Amazon Linux 2, "
                f"glibc {'.'.join(map(str, RUNTIME_GLIBC))}):\n{listed}"
            )
        write_zip(python_dir.parent, zip_path)
        info.write_text(
            json.dumps(
                {"pruned_bytes": pruned, "stripped_bytes": stripped, "unstripped": unstripped}
            )
        )


def main(argv: list[str] | None = None) -> int:
    """CLI: build the layer and print its sizes."""
    parser = argparse.ArgumentParser(prog="python -m deploy.layer", description=__doc__)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "build" / "aws" / "layer.zip")
    parser.add_argument("--exclude", action="append", default=[], help="leave a package out")
    args = parser.parse_args(argv)
    try:
        report = build_layer(args.out, LayerSpec(exclude=frozenset(args.exclude)))
    except LayerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"built {report.zip_path}")
    for line in report.lines():
        print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
