"""Lambda cold-import time of chalice_app/app.py and the artifacts' sizes against Lambda's limits.

``python -m bench.aws_package [--runs 5] [--stage dev] [--no-package]``

The package step builds ``deployment.zip`` and our layer (deploy/package_aws.py) and times the
cold import again from the unzipped artifacts alone (``python -I -S``, as in
tests/aws/test_clean_runtime.py), with pandas and pyarrow imported too, as the first
data-handling invocation does.

Cold import: median of N fresh interpreters, each importing app.py with the stage's
environment (as a Lambda cold start does), measured inside the process (interpreter start-up
excluded) and as the whole process wall time. Target: import < 1.0 s on this machine. The
modules pulled in at import are listed, so a heavy import (pandas, pyarrow) is easy to spot.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from deploy import package_aws

IMPORT_TARGET_SECONDS = 1.0
HEAVY = (
    "pandas",
    "numpy",
    "pyarrow",
    "openpyxl",
    "google.auth",
    "google.cloud.storage",
    "boto3",
    "requests",
)
_PROBE = """
import json, runpy, sys, time
began = time.perf_counter()
runpy.run_path(sys.argv[1])
elapsed = time.perf_counter() - began
print(json.dumps({"seconds": elapsed, "heavy": [m for m in json.loads(sys.argv[2])
                                                if m in sys.modules]}))
"""


def stage_env(stage: str) -> dict[str, str]:
    """The process environment plus the stage's variables (config path made absolute)."""
    env = dict(package_aws.stage_config(stage).get("environment_variables") or {})  # type: ignore[call-overload]
    env["DRIVEPIPE_CONFIG"] = str(package_aws.APP_DIR / env["DRIVEPIPE_CONFIG"])
    env["AWS_LAMBDA_FUNCTION_NAME"] = f"drivepipe-{stage}-bench"
    return {**os.environ, **env}


def cold_imports(runs: int, stage: str) -> tuple[list[float], list[float], list[str]]:
    """In-process import seconds, whole-process seconds, and heavy modules imported."""
    inner, outer, heavy = [], [], []
    app_path = str(package_aws.APP_DIR / "app.py")
    for _ in range(runs):
        began = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", _PROBE, app_path, json.dumps(HEAVY)],
            env=stage_env(stage),
            capture_output=True,
            text=True,
            check=True,
            cwd=package_aws.APP_DIR,
        )
        outer.append(time.perf_counter() - began)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        inner.append(result["seconds"])
        heavy = result["heavy"]
    return inner, outer, heavy


_ARTIFACT_PROBE = """
import sys, time
sys.path[:0] = sys.argv[1:3]
began = time.perf_counter()
import app, pandas, pyarrow.parquet
print(time.perf_counter() - began)
"""


def artifact_imports(
    report: package_aws.PackageReport, tmp: Path, runs: int, stage: str
) -> list[float]:
    """Seconds to import app.py, pandas and pyarrow.parquet from the unzipped artifacts."""
    assert report.layer is not None
    task, opt = tmp / "task", tmp / "opt"
    for source, target in ((report.zip_path, task), (report.layer.zip_path, opt)):
        with zipfile.ZipFile(source) as archive:
            archive.extractall(target)
    env = dict(package_aws.stage_config(stage).get("environment_variables") or {})  # type: ignore[call-overload]
    env.update(AWS_DEFAULT_REGION="us-east-1", PATH=os.environ.get("PATH", ""))
    seconds = []
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-I", "-S", "-c", _ARTIFACT_PROBE, str(task), str(opt / "python")],
            env=env,
            cwd=task,
            capture_output=True,
            text=True,
            check=True,
        )
        seconds.append(float(done.stdout.strip().splitlines()[-1]))
    return seconds


def main(argv: list[str] | None = None) -> int:
    """Print the figures; exit 1 if the package breaks a limit."""
    parser = argparse.ArgumentParser(prog="python -m bench.aws_package")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--stage", default="dev")
    parser.add_argument("--no-package", action="store_true", help="skip chalice package")
    args = parser.parse_args(argv)

    inner, outer, heavy = cold_imports(args.runs, args.stage)
    median = statistics.median(inner)
    print(f"cold import of chalice_app/app.py, median of {args.runs} fresh processes:")
    print(
        f"  import           {median:.3f} s  (min {min(inner):.3f}, max {max(inner):.3f}; "
        f"target < {IMPORT_TARGET_SECONDS:.1f} s -> {median / IMPORT_TARGET_SECONDS:.2f}x)"
    )
    print(f"  whole process    {statistics.median(outer):.3f} s")
    print(f"  heavy modules imported at cold start: {', '.join(heavy) or 'none'}")
    if args.no_package:
        return 0
    with tempfile.TemporaryDirectory(prefix="drivepipe-bench-aws-") as tmp:
        report = package_aws.build(args.stage, Path(tmp) / "out")
        if report.layer is not None:
            seconds = artifact_imports(report, Path(tmp), args.runs, args.stage)
            print(f"cold import from the unzipped artifacts (python -I -S), median of {args.runs}:")
            print(f"  app + pandas + pyarrow.parquet {statistics.median(seconds):.3f} s")
    print(f"artifacts (chalice package --stage {args.stage}, terraform, and layer.zip):")
    for line in report.lines():
        print("  " + line)
    print(
        f"  margin ratio     {report.margin_bytes / package_aws.LAMBDA_UNZIPPED_LIMIT:.1%} "
        "of the 250 MiB limit left"
    )
    problems = report.problems()
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
