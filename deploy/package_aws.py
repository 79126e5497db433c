"""Build the Lambda package: vendor ``shared/``, run ``chalice package``, check Lambda's limits.

``python -m deploy.package_aws [--stage dev] [--out build/aws] [--pkg-format terraform]``

Chalice packages only ``app.py``, ``chalicelib/``, ``vendor/`` and ``requirements.txt``, and
does not follow symlinks (aws/chalice#696), so ``shared/`` is copied into
``chalice_app/vendor/shared/`` (git-ignored, recreated on every build). pandas, numpy and
pyarrow come from the AWS SDK for pandas managed layer, configured per stage in
``.chalice/config.json``; the size check adds that layer's documented unzipped size.

Chalice cannot ask for SQS partial batch responses, so for Terraform output the build adds
``function_response_types = ["ReportBatchItemFailures"]`` to every SQS event source mapping in
``chalice.tf.json`` (:func:`enable_partial_batch_responses`); after ``chalice deploy``, run the
``aws lambda update-event-source-mapping`` command printed by ``--print-sqs-commands``.

The default format is Terraform because Chalice's CloudFormation (SAM) output refuses apps
with ``@app.on_s3_event`` ("CloudFormation does not support modifying the event notifications
of existing buckets", chalice/package.py); ``chalice deploy`` and Terraform both support it.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from deploy import vendor

REPO_ROOT = Path(__file__).resolve().parent.parent
APP_DIR = REPO_ROOT / "chalice_app"
SHARED_DIR = REPO_ROOT / "shared"
MIB = 1024 * 1024

# Lambda quotas (docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html): the function
# code plus all its layers may not exceed 250 MB unzipped (262,144,000 bytes, as Lambda's error
# "Layers consume more than the available size of 262144000 bytes" states), and a zip uploaded
# directly may not exceed 50 MB.
LAMBDA_UNZIPPED_LIMIT = 262_144_000
LAMBDA_DIRECT_UPLOAD_LIMIT = 50 * MIB

# AWS SDK for pandas 3.16.1 managed layer, unzipped: 204 MiB, measured with `du -h` and
# reported in aws/aws-sdk-pandas#3331 ("with the release of 3.16.1 the unzipped size of the
# layers increased by around 22 percent (37MB) to 204MB"; 3.16.0 was 167 MiB). We budget for
# the larger figure.
LAYER_NAME = "AWSSDKPandas-Python311"
LAYER_UNZIPPED_BYTES = 204 * MIB
LAYER_SIZE_SOURCE = "aws/aws-sdk-pandas#3331 (layer 3.16.1, unzipped, du -h)"
LAYER_ACCOUNT = "336392948345"

# Layer versions of AWS SDK for pandas 3.16.1 for Python 3.11 x86_64, from the table at
# https://aws-sdk-pandas.readthedocs.io/en/stable/layers.html. Other regions: look the ARN up
# there (the account and version differ per region) and set it in the stage's "layers".
LAYER_VERSIONS = {"af-south-1": 30, "ap-northeast-1": 31, "us-east-1": 31}

# Never in the zip: the layer or the Lambda runtime provides them (see requirements.txt).
PROVIDED_AT_RUNTIME = ("pandas", "numpy", "pyarrow", "boto3", "botocore")


class PackageError(RuntimeError):
    """The package could not be built or breaks a Lambda limit."""


@dataclass(frozen=True)
class PackageReport:
    """Sizes of a built package against Lambda's limits."""

    zip_path: Path
    zipped_bytes: int
    unzipped_bytes: int
    layer_bytes: int
    top_level: dict[str, int]

    @property
    def total_bytes(self) -> int:
        """Function code plus layer, unzipped."""
        return self.unzipped_bytes + self.layer_bytes

    @property
    def margin_bytes(self) -> int:
        """Room left under the 250 MB unzipped limit (negative when over)."""
        return LAMBDA_UNZIPPED_LIMIT - self.total_bytes

    def problems(self) -> list[str]:
        """Every limit this package breaks; empty when it fits."""
        found = []
        if self.total_bytes >= LAMBDA_UNZIPPED_LIMIT:
            found.append(
                f"code + layer unzipped is {self.total_bytes / MIB:.1f} MiB, over Lambda's "
                f"{LAMBDA_UNZIPPED_LIMIT / MIB:.0f} MiB"
            )
        if self.zipped_bytes >= LAMBDA_DIRECT_UPLOAD_LIMIT:
            found.append(f"deployment.zip is {self.zipped_bytes / MIB:.1f} MiB, over 50 MiB")
        for name in PROVIDED_AT_RUNTIME:
            if name in self.top_level:
                found.append(f"{name} is in the zip although the layer/runtime provides it")
        return found

    def lines(self) -> list[str]:
        """Human-readable figures."""
        biggest = sorted(self.top_level.items(), key=lambda kv: -kv[1])[:6]
        return [
            f"deployment.zip           {self.zipped_bytes / MIB:8.2f} MiB zipped "
            f"(direct-upload limit 50 MiB)",
            f"function code unzipped   {self.unzipped_bytes / MIB:8.2f} MiB",
            f"{LAYER_NAME} layer {self.layer_bytes / MIB:8.2f} MiB  [{LAYER_SIZE_SOURCE}]",
            f"total unzipped           {self.total_bytes / MIB:8.2f} MiB "
            f"of {LAMBDA_UNZIPPED_LIMIT / MIB:.0f} MiB",
            f"margin                   {self.margin_bytes / MIB:8.2f} MiB",
            "largest in zip: " + ", ".join(f"{n} {b / MIB:.1f}" for n, b in biggest),
        ]


def vendor_shared(app_dir: Path = APP_DIR, shared_dir: Path = SHARED_DIR) -> Path:
    """Copy ``shared/`` to ``<app_dir>/vendor/shared`` (no caches), replacing ``vendor/``."""
    return vendor.vendor_shared(app_dir / "vendor", shared_dir, fresh=True)


def stage_config(stage: str, app_dir: Path = APP_DIR) -> dict[str, object]:
    """The stage's block of ``.chalice/config.json``; raises if the stage is missing."""
    config = json.loads((app_dir / ".chalice" / "config.json").read_text())
    stages = config.get("stages", {})
    if stage not in stages:
        raise PackageError(f"stage {stage!r} is not in .chalice/config.json ({', '.join(stages)})")
    return dict(stages[stage])


def check_layers(stage: str, region: str | None, app_dir: Path = APP_DIR) -> list[str]:
    """Warnings about the stage's layer: missing, wrong region, or not the pandas layer."""
    layers = stage_config(stage, app_dir).get("layers") or []
    pandas_layers = [arn for arn in layers if f":layer:{LAYER_NAME}:" in str(arn)]
    if not pandas_layers:
        return [f"stage {stage!r} has no {LAYER_NAME} layer: pandas/numpy/pyarrow would be missing"]
    warnings = []
    for arn in pandas_layers:
        layer_region = str(arn).split(":")[3]
        if region and layer_region != region:
            expected = LAYER_VERSIONS.get(region)
            hint = (
                f"arn:aws:lambda:{region}:{LAYER_ACCOUNT}:layer:{LAYER_NAME}:{expected}"
                if expected
                else "see https://aws-sdk-pandas.readthedocs.io/en/stable/layers.html"
            )
            warnings.append(
                f"layer {arn} is in {layer_region} but you deploy to {region}; "
                f"a function can only use layers of its own region ({hint})"
            )
    return warnings


def run_chalice_package(
    stage: str, out_dir: Path, pkg_format: str, app_dir: Path = APP_DIR
) -> Path:
    """``chalice package`` into ``out_dir``; returns the deployment.zip path."""
    chalice = Path(sys.executable).with_name("chalice")
    command = [str(chalice) if chalice.exists() else "chalice", "package", "--stage", stage]
    command += ["--pkg-format", pkg_format, str(out_dir)]
    env = {**os.environ, "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1")}
    done = subprocess.run(command, cwd=app_dir, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise PackageError(
            f"chalice package failed ({done.returncode}):\n{done.stdout}\n{done.stderr}".strip()
        )
    zip_path = out_dir / "deployment.zip"
    if not zip_path.exists():
        raise PackageError(f"chalice package wrote no deployment.zip in {out_dir}")
    return zip_path


def measure(zip_path: Path, layer_bytes: int = LAYER_UNZIPPED_BYTES) -> PackageReport:
    """Unzipped size (sum of member sizes) and per-top-level-entry sizes of ``zip_path``."""
    top: dict[str, int] = {}
    total = 0
    with zipfile.ZipFile(zip_path) as archive:
        for info in archive.infolist():
            total += info.file_size
            head = info.filename.split("/", 1)[0]
            name = head.split("-", 1)[0] if head.endswith((".dist-info", ".libs")) else head
            name = name.removesuffix(".py")
            top[name] = top.get(name, 0) + info.file_size
    return PackageReport(zip_path, zip_path.stat().st_size, total, layer_bytes, top)


def build(
    stage: str = "dev", out_dir: Path | None = None, pkg_format: str = "terraform"
) -> PackageReport:
    """Vendor, package and measure; ``out_dir`` defaults to a fresh temporary directory.

    Holds an exclusive lock on the app directory meanwhile, so concurrent builds (parallel
    tests, a bench next to a deploy) never see a half-copied ``vendor/``.
    """
    out = out_dir or Path(tempfile.mkdtemp(prefix="drivepipe-aws-"))
    if out.exists() and any(out.iterdir()):
        shutil.rmtree(out)  # chalice refuses to package into a non-empty directory
    out.parent.mkdir(parents=True, exist_ok=True)
    with build_lock():
        vendor_shared()
        zip_path = run_chalice_package(stage, out, pkg_format)
    if pkg_format == "terraform":
        enable_partial_batch_responses(out / "chalice.tf.json")
    return measure(zip_path)


PARTIAL_BATCH = ["ReportBatchItemFailures"]


def enable_partial_batch_responses(tf_path: Path) -> int:
    """Make SQS event source mappings honour ``batchItemFailures``; returns how many changed.

    Without it Lambda ignores the handlers' partial batch response and deletes the whole batch
    on success, so a failed item would be lost instead of redelivered.
    """
    tf = json.loads(tf_path.read_text())
    mappings = tf.get("resource", {}).get("aws_lambda_event_source_mapping", {})
    changed = 0
    for mapping in mappings.values():
        if ":sqs:" in json.dumps(mapping.get("event_source_arn", "")):
            mapping["function_response_types"] = PARTIAL_BATCH
            changed += 1
    tf_path.write_text(json.dumps(tf, indent=2))
    return changed


def sqs_commands(stage: str, region: str = "us-east-1") -> list[str]:
    """The shell commands that create the stage's work queue + DLQ and, after ``chalice
    deploy``, turn on partial batch responses for the worker (see serverless-README.md)."""
    from shared.run.fanout.queues import DLQ_ENV, QUEUE_ENV

    env = dict(stage_config(stage).get("environment_variables") or {})  # type: ignore[call-overload]
    queue, dlq = env.get(QUEUE_ENV), env.get(DLQ_ENV)
    if not queue or not dlq:
        return [f"# stage {stage!r} sets no DRIVEPIPE_FANOUT_QUEUE/DLQ: fan-out is off"]
    redrive = {
        "deadLetterTargetArn": f"arn:aws:sqs:{region}:${{ACCOUNT}}:{dlq}",
        "maxReceiveCount": "5",
    }
    # VisibilityTimeout must be >= the worker's timeout (300 s); AWS advises 6x for Lambda.
    attributes = json.dumps({"VisibilityTimeout": "1800", "RedrivePolicy": json.dumps(redrive)})
    function = f"drivepipe-{stage}-fanout_worker"
    return [
        "ACCOUNT=$(aws sts get-caller-identity --query Account --output text)",
        f"aws sqs create-queue --region {region} --queue-name {dlq} "
        "--attributes MessageRetentionPeriod=1209600",
        f"cat > /tmp/{queue}.json <<JSON\n{attributes}\nJSON",
        f"aws sqs create-queue --region {region} --queue-name {queue} "
        f"--attributes file:///tmp/{queue}.json",
        "# after chalice deploy:",
        f"UUID=$(aws lambda list-event-source-mappings --region {region} --function-name "
        f"{function} --query 'EventSourceMappings[0].UUID' --output text)",
        f"aws lambda update-event-source-mapping --region {region} --uuid $UUID "
        "--function-response-types ReportBatchItemFailures",
    ]


@contextlib.contextmanager
def build_lock(app_dir: Path = APP_DIR) -> Iterator[None]:
    """An exclusive advisory lock on a file in the (git-ignored) ``.chalice/deployments/``."""
    lock_dir = app_dir / ".chalice" / "deployments"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / ".build.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; exits 1 when the package breaks a Lambda limit."""
    parser = argparse.ArgumentParser(prog="python -m deploy.package_aws", description=__doc__)
    parser.add_argument("--stage", default="dev")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "build" / "aws")
    parser.add_argument(
        "--pkg-format", choices=("terraform", "cloudformation"), default="terraform"
    )
    parser.add_argument(
        "--region",
        default=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
        help="deployment region, to check the layer ARN against",
    )
    parser.add_argument(
        "--print-sqs-commands",
        action="store_true",
        help="print the commands that create the fan-out queues, then exit",
    )
    args = parser.parse_args(argv)
    if args.print_sqs_commands:
        print("\n".join(sqs_commands(args.stage, args.region or "us-east-1")))
        return 0
    for warning in check_layers(args.stage, args.region):
        print(f"WARNING: {warning}", file=sys.stderr)
    if "111122223333" in json.dumps(stage_config(args.stage)):
        print(
            "WARNING: .chalice/config.json still has the placeholder account 111122223333 "
            "(DRIVE_SECRET_ARN); see serverless-README.md",
            file=sys.stderr,
        )
    try:
        report = build(args.stage, args.out.resolve(), args.pkg_format)
    except PackageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"packaged stage {args.stage!r} ({args.pkg_format}) into {report.zip_path.parent}")
    for line in report.lines():
        print("  " + line)
    problems = report.problems()
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
