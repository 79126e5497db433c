"""deploy/layer.py without building: pins, the services kept, pruning, the ELF checks."""

from __future__ import annotations

import re
import struct
from pathlib import Path

from deploy import layer
from deploy.layer import BOTO_SERVICES, LayerSpec, load_segments_aligned, normalize, prune
from deploy.locks import direct_pins

REPO_ROOT = Path(__file__).resolve().parents[2]


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[normalize(name.split("[", 1)[0])] = version
    return pins


def test_layer_pins_match_the_tested_versions() -> None:
    ours = _pins(layer.REQUIREMENTS)
    compat = _pins(REPO_ROOT / "requirements" / "lambda-layer.txt")
    runtime = direct_pins(REPO_ROOT / "requirements" / "aws.in")  # the core's + boto3
    assert {k: ours[k] for k in compat} == compat  # what `make test-lambda-compat` runs
    rest = {k: v for k, v in runtime.items() if k not in compat and k != "google-cloud-storage"}
    assert {k: ours[k] for k in rest} == rest
    assert "google-cloud-storage" not in ours  # the GCP functions' only


def test_every_aws_client_the_code_creates_is_kept() -> None:
    called: set[str] = set()
    for path in (REPO_ROOT / "shared").rglob("*.py"):
        text = path.read_text()
        called |= set(re.findall(r"""client(?:_factory)?\(\s*["']([a-z0-9-]+)["']""", text))
    assert called, "found no boto3 client() call: has the pattern changed?"
    assert called <= set(BOTO_SERVICES), called - set(BOTO_SERVICES)


def test_excluding_a_package_changes_the_pins_and_the_cache_key() -> None:
    full = LayerSpec()
    without = LayerSpec(exclude=frozenset({"OpenPyXL"}))
    assert "openpyxl==3.1.5" in full.pins()
    assert [p for p in full.pins() if not p.startswith("openpyxl")] == without.pins()
    assert full.key() != without.key() and full.key() == LayerSpec().key()


def test_prune_removes_what_nothing_imports(tmp_path: Path) -> None:
    root = tmp_path / "python"
    files = [
        "bin/f2py",
        "pandas/__init__.py",
        "pandas/tests/test_x.py",
        "pandas/_libs/lib.pyi",
        "pandas/__pycache__/x.cpython-311.pyc",
        "numpy/f2py/__init__.py",
        "numpy/_core/include/numpy/x.h",
        "pyarrow/__init__.py",
        "pyarrow/lib.pyx",
        "pyarrow/_flight.cpython-311-x86_64-linux-gnu.so",
        "pyarrow/libarrow_flight.so.2000",
        "pyarrow/libarrow_python.so",
        "pyarrow/libarrow_python.so.2000",
        "pyarrow/libarrow_python.so.2000.0.0",
        "pyarrow/libarrow_substrait.so.2000",
        "pyarrow/_dataset.cpython-311-x86_64-linux-gnu.so",
        "botocore/data/endpoints.json",
        "botocore/data/s3/2006-03-01/service-2.json.gz",
        "botocore/data/s3/2006-03-01/examples-1.json",
        "botocore/data/ec2/2016-11-15/service-2.json.gz",
        "boto3/data/sqs/2012-11-05/resources-1.json",
        "boto3/data/ec2/2016-11-15/resources-1.json",
    ]
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("x" * 10)
    removed = prune(root, LayerSpec())
    left = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert left == [
        "boto3/data/sqs/2012-11-05/resources-1.json",
        "botocore/data/endpoints.json",
        "botocore/data/s3/2006-03-01/service-2.json.gz",
        "pandas/__init__.py",
        "pyarrow/__init__.py",
        "pyarrow/_dataset.cpython-311-x86_64-linux-gnu.so",
        "pyarrow/libarrow_python.so.2000",
        "pyarrow/libarrow_substrait.so.2000",
    ]
    assert removed == 10 * (len(files) - len(left))


def _elf(path: Path, offset: int, vaddr: int, align: int = 0x1000) -> Path:
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<Q", header, 32, 64)  # e_phoff
    struct.pack_into("<HH", header, 54, 56, 1)  # e_phentsize, e_phnum
    phdr = struct.pack("<IIQQQQQQ", 1, 5, offset, vaddr, vaddr, 0, 0, align)
    path.write_bytes(bytes(header) + phdr)
    return path


def test_misaligned_load_segments_are_detected(tmp_path: Path) -> None:
    assert load_segments_aligned(_elf(tmp_path / "ok.so", 0x1234, 0x201234))
    assert not load_segments_aligned(_elf(tmp_path / "bad.so", 0x1234, 0x201000))
    (tmp_path / "text").write_text("not an ELF file")
    assert load_segments_aligned(tmp_path / "text")


def test_glibc_versions_are_parsed() -> None:
    needs = "Version needs section '.gnu.version_r'\n  Name: GLIBC_2.17  Name: GLIBC_2.27\n"
    assert max(layer._versions(needs, "GLIBC")) == (2, 27) > layer.RUNTIME_GLIBC
