"""Build both Lambda artifacts, measure them and check Lambda's limits.

``python -m deploy.package_aws [--stage dev] [--out build/aws] [--pkg-format terraform]``

- ``build/aws/deployment.zip``: ``chalice package`` output. Chalice packages only ``app.py``,
  ``chalicelib/``, ``vendor/`` and ``requirements.txt``, and does not follow symlinks
  (aws/chalice#696), so the build assembles a Chalice project of its own,
  ``build/aws-project/`` (``chalice_app/`` plus ``vendor/shared/``, made anew every build, its
  ``.chalice/deployed/`` linked to ``chalice_app/.chalice/deployed/``), and packages that.
  Nothing is ever vendored into ``chalice_app/``, so ``chalice local`` there always runs the
  working tree. ``chalice deploy`` runs from ``build/aws-project/``.
  ``chalice_app/requirements.txt`` lists nothing: every third-party package comes from the
  layer.
- ``build/aws/layer.zip``: our own layer (:mod:`deploy.layer`), published with
  ``aws lambda publish-layer-version`` and named in the stage's ``layers``.

It prints the unzipped sizes of both and fails (exit 1) when function plus layer is over
:data:`BUDGET_BYTES`, 230 MiB: Lambda's 250 MiB limit less a 20 MiB margin. A stage that still
uses the managed AWS SDK for pandas layer is measured against that layer's cited size instead.
It refuses a local Python whose minor version differs from the layer's, because Chalice picks
the Lambda runtime from the interpreter it runs on.

The stage's settings come from ``deploy/aws-stages.json`` (:mod:`deploy.aws_stage`): the build
refuses stale generated files, a ``--region`` other than the stage's, and (unless
``--allow-placeholders``, which ``make package-aws`` passes to measure a fresh checkout) the
shipped placeholder account and ``DRIVE_FOLDER_ID``. Chalice's Terraform output is made usable
with current Terraform and AWS provider 5 by :mod:`deploy.terraform_aws` (queues, failure
destinations, partial batch responses, stage-qualified rule names, log groups).

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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from deploy import aws_stage, terraform_aws, vendor
from deploy import layer as layer_builder
from deploy.layer import LayerError, LayerReport, LayerSpec

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
# What we allow ourselves: the limit less a 20 MiB margin for what grows between releases.
BUDGET_BYTES = 230 * MIB

# Our layer: build/aws/layer.zip, published per region as this name.
OWN_LAYER_NAME = f"drivepipe-python{layer_builder.LAYER_PYTHON.replace('.', '')}"
PLACEHOLDER_ACCOUNT = "111122223333"

# The managed alternative: AWS SDK for pandas 3.16.1, unzipped 204 MiB, measured with `du -h`
# and reported in aws/aws-sdk-pandas#3331 ("with the release of 3.16.1 the unzipped size of the
# layers increased by around 22 percent (37MB) to 204MB"; 3.16.0 was 167 MiB). Cited, not
# measured: we cannot download it without an AWS account.
MANAGED_LAYER_NAME = "AWSSDKPandas-Python311"
MANAGED_LAYER_BYTES = 204 * MIB
MANAGED_LAYER_SOURCE = "cited: aws/aws-sdk-pandas#3331 (3.16.1, du -h), not measured"
MANAGED_LAYER_ACCOUNT = "336392948345"
# Layer versions of AWS SDK for pandas 3.16.1 for Python 3.11 x86_64, from the table at
# https://aws-sdk-pandas.readthedocs.io/en/stable/layers.html.
MANAGED_LAYER_VERSIONS = {"af-south-1": 30, "ap-northeast-1": 31, "us-east-1": 31}

# With the managed layer these come from it or from the runtime, never from the zip.
MANAGED_PROVIDES = ("pandas", "numpy", "pyarrow", "boto3", "botocore")


class PackageError(RuntimeError):
    """The package could not be built or breaks a Lambda limit."""


@dataclass(frozen=True)
class PackageReport:
    """Sizes of the function zip and its layer against Lambda's limits."""

    zip_path: Path
    zipped_bytes: int
    unzipped_bytes: int
    top_level: dict[str, int]
    layer_bytes: int
    layer_source: str
    layer: LayerReport | None = None

    @property
    def total_bytes(self) -> int:
        """Function code plus layer, unzipped."""
        return self.unzipped_bytes + self.layer_bytes

    @property
    def margin_bytes(self) -> int:
        """Room left under Lambda's 250 MiB unzipped limit (negative when over)."""
        return LAMBDA_UNZIPPED_LIMIT - self.total_bytes

    def problems(self) -> list[str]:
        """Every limit this package breaks; empty when it fits."""
        found = []
        if self.total_bytes > BUDGET_BYTES:
            found.append(
                f"function + layer unzipped is {self.total_bytes / MIB:.1f} MiB, over the "
                f"{BUDGET_BYTES / MIB:.0f} MiB budget (Lambda's "
                f"{LAMBDA_UNZIPPED_LIMIT / MIB:.0f} MiB less a 20 MiB margin)"
            )
        if self.zipped_bytes >= LAMBDA_DIRECT_UPLOAD_LIMIT:
            found.append(f"deployment.zip is {self.zipped_bytes / MIB:.1f} MiB, over 50 MiB")
        provided = set(self.layer.top_level) if self.layer else set(MANAGED_PROVIDES)
        for name in sorted(provided & set(self.top_level)):
            found.append(f"{name} is in deployment.zip although the layer provides it")
        return found

    def lines(self) -> list[str]:
        """Human-readable figures."""
        biggest = sorted(self.top_level.items(), key=lambda kv: -kv[1])[:6]
        lines = [
            f"deployment.zip           {self.zipped_bytes / MIB:8.2f} MiB zipped "
            f"(direct-upload limit 50 MiB)",
            f"function code unzipped   {self.unzipped_bytes / MIB:8.2f} MiB",
        ]
        if self.layer is not None:
            lines += self.layer.lines()
        else:
            lines.append(
                f"{MANAGED_LAYER_NAME}    {self.layer_bytes / MIB:8.2f} MiB [{self.layer_source}]"
            )
        return [
            *lines,
            f"function + layer         {self.total_bytes / MIB:8.2f} MiB unzipped, of "
            f"{LAMBDA_UNZIPPED_LIMIT / MIB:.0f} MiB (budget {BUDGET_BYTES / MIB:.0f})",
            f"margin                   {self.margin_bytes / MIB:8.2f} MiB under "
            f"{LAMBDA_UNZIPPED_LIMIT / MIB:.0f} MiB "
            f"({(BUDGET_BYTES - self.total_bytes) / MIB:.2f} MiB under the budget)",
            "largest in zip: " + ", ".join(f"{n} {b / MIB:.1f}" for n, b in biggest),
        ]


def check_python(version: tuple[int, ...] = tuple(sys.version_info[:2])) -> str | None:
    """Why this interpreter cannot package for the layer's runtime; None when it can.

    Chalice sets the functions' runtime from the minor version of the Python it runs on, and
    the layer's compiled wheels are for one minor version only.
    """
    wanted = layer_builder.LAYER_PYTHON
    found = ".".join(str(part) for part in version[:2])
    if found == wanted:
        return None
    return (
        f"this is Python {found}, but the layer is built for python{wanted} and Chalice would "
        f"deploy the functions as python{found}: run `make package-aws` with a Python "
        f"{wanted} venv (make PYTHON=python{wanted} setup)"
    )


def vendor_shared(app_dir: Path = APP_DIR, shared_dir: Path = SHARED_DIR) -> Path:
    """Copy ``shared/`` to ``<app_dir>/vendor/shared`` (no caches), replacing ``vendor/``."""
    return vendor.vendor_shared(app_dir / "vendor", shared_dir, fresh=True)


PROJECT_FILES = ("app.py", "requirements.txt", "chalicelib", ".chalice")


def assemble_project(project: Path, app_dir: Path = APP_DIR) -> Path:
    """A Chalice project to package and deploy: ``app_dir`` (without caches or deployment
    state) plus ``vendor/shared``, at ``project`` (replaced); ``.chalice/deployed`` links to
    ``app_dir``'s, so ``chalice deploy`` from there keeps its state across builds."""
    if project.exists():
        shutil.rmtree(project)
    project.mkdir(parents=True)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "deployed", "deployments")
    for name in PROJECT_FILES:
        source = app_dir / name
        if source.is_dir():
            shutil.copytree(source, project / name, ignore=skip)
        elif source.exists():
            shutil.copy2(source, project / name)
    deployed = app_dir / ".chalice" / "deployed"
    deployed.mkdir(parents=True, exist_ok=True)
    (project / ".chalice" / "deployed").symlink_to(deployed.resolve(), target_is_directory=True)
    vendor_shared(project)
    return project


def project_dir(out_dir: Path) -> Path:
    """Where the build assembles its Chalice project: beside ``out_dir``."""
    return out_dir.with_name(out_dir.name + "-project")


def stage_config(stage: str, app_dir: Path = APP_DIR) -> dict[str, object]:
    """The stage's block of ``.chalice/config.json``; raises if the stage is missing."""
    config = json.loads((app_dir / ".chalice" / "config.json").read_text())
    stages = config.get("stages", {})
    if stage not in stages:
        raise PackageError(f"stage {stage!r} is not in .chalice/config.json ({', '.join(stages)})")
    return dict(stages[stage])


def stage_layers(stage: str, app_dir: Path = APP_DIR) -> list[str]:
    """The layer ARNs the stage names."""
    return [str(arn) for arn in stage_config(stage, app_dir).get("layers") or []]  # type: ignore[attr-defined]


def uses_managed_layer(stage: str, app_dir: Path = APP_DIR) -> bool:
    """True when the stage uses the AWS SDK for pandas layer instead of ours."""
    return any(f":layer:{MANAGED_LAYER_NAME}:" in arn for arn in stage_layers(stage, app_dir))


def check_layers(stage: str, region: str | None, app_dir: Path = APP_DIR) -> list[str]:
    """Warnings about the stage's layer: missing, from another region, or still a placeholder."""
    layers = stage_layers(stage, app_dir)
    ours = [arn for arn in layers if f":layer:{OWN_LAYER_NAME}:" in arn]
    managed = [arn for arn in layers if f":layer:{MANAGED_LAYER_NAME}:" in arn]
    if not ours and not managed:
        return [
            f"stage {stage!r} names neither the {OWN_LAYER_NAME} layer (build/aws/layer.zip) nor "
            f"{MANAGED_LAYER_NAME}: pandas, numpy and pyarrow would be missing"
        ]
    warnings = []
    for arn in ours:
        if arn.split(":")[4] == PLACEHOLDER_ACCOUNT:
            warnings.append(
                f"layer {arn} is the placeholder: publish build/aws/layer.zip with "
                "`aws lambda publish-layer-version`, then python -m deploy.aws_stage set "
                f"--stage {stage} --layer-version N (serverless-README.md, Deploy)"
            )
    for arn in ours + managed:
        layer_region = arn.split(":")[3]
        if region and layer_region != region:
            if arn in ours:
                hint = f"publish build/aws/layer.zip in {region} and use that ARN"
            elif expected := MANAGED_LAYER_VERSIONS.get(region):
                hint = (
                    f"arn:aws:lambda:{region}:{MANAGED_LAYER_ACCOUNT}:layer:"
                    f"{MANAGED_LAYER_NAME}:{expected}"
                )
            else:
                hint = "see https://aws-sdk-pandas.readthedocs.io/en/stable/layers.html"
            warnings.append(
                f"layer {arn} is in {layer_region} but you deploy to {region}; "
                f"a function can only use layers of its own region ({hint})"
            )
    return warnings


def run_chalice_package(stage: str, out_dir: Path, pkg_format: str, app_dir: Path) -> Path:
    """``chalice package`` into ``out_dir``; returns the deployment.zip path."""
    chalice = Path(sys.executable).with_name("chalice")
    command = [str(chalice) if chalice.exists() else "chalice", "package", "--stage", stage]
    command += ["--pkg-format", pkg_format, str(out_dir)]
    settings = aws_stage.load_stages().get(stage)
    region = settings.region if settings else os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
    env = {**os.environ, "AWS_DEFAULT_REGION": region}
    done = subprocess.run(command, cwd=app_dir, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise PackageError(
            f"chalice package failed ({done.returncode}):\n{done.stdout}\n{done.stderr}".strip()
        )
    zip_path = out_dir / "deployment.zip"
    if not zip_path.exists():
        raise PackageError(f"chalice package wrote no deployment.zip in {out_dir}")
    return zip_path


def measure(zip_path: Path, layer: LayerReport | None = None) -> PackageReport:
    """The function zip's sizes beside the layer's: ``layer``, else the managed layer's."""
    total, top = layer_builder.measure(zip_path)  # the same sizing as the layer's
    if layer is None:
        return PackageReport(
            zip_path,
            zip_path.stat().st_size,
            total,
            top,
            MANAGED_LAYER_BYTES,
            MANAGED_LAYER_SOURCE,
        )
    return PackageReport(
        zip_path,
        zip_path.stat().st_size,
        total,
        top,
        layer.unzipped_bytes,
        f"measured: {layer.zip_path}",
        layer,
    )


def build(
    stage: str = "dev",
    out_dir: Path | None = None,
    pkg_format: str = "terraform",
    layer_spec: LayerSpec | None = None,
) -> PackageReport:
    """Build ``deployment.zip`` and (unless the stage uses the managed layer) ``layer.zip``
    into ``out_dir`` (default: a fresh temporary directory), and measure both.

    Holds an exclusive lock on the app directory while vendoring and packaging, so concurrent
    builds (parallel tests, a bench next to a deploy) never see a half-copied ``vendor/``.
    """
    if problem := check_python():
        raise PackageError(problem)
    out = out_dir or Path(tempfile.mkdtemp(prefix="drivepipe-aws-"))
    if out.exists() and any(out.iterdir()):
        shutil.rmtree(out)  # chalice refuses to package into a non-empty directory
    out.parent.mkdir(parents=True, exist_ok=True)
    project = project_dir(out)
    with build_lock():
        stale = APP_DIR / "vendor"  # left by builds before the project moved to build/
        if (stale / "shared").exists():
            shutil.rmtree(stale)
        assemble_project(project)
        zip_path = run_chalice_package(stage, out, pkg_format, project)
    if pkg_format == "terraform":
        settings = aws_stage.load_stages().get(stage)
        terraform_aws.postprocess(out / "chalice.tf.json", settings)
    if uses_managed_layer(stage) and layer_spec is None:
        return measure(zip_path)
    try:
        layer = layer_builder.build_layer(out / "layer.zip", layer_spec)
    except LayerError as exc:
        raise PackageError(str(exc)) from None
    return measure(zip_path, layer)


def deploy_problems(stage: str, region: str | None, allow_placeholders: bool) -> list[str]:
    """Why the stage's package would be wrong where it is deployed (empty when it is fine).

    A region other than the stage's would deploy functions whose layer, secret and queue
    ARNs point at another region; stale generated files would deploy old names or policies.
    """
    found = []
    settings = aws_stage.load_stages().get(stage)
    if settings is not None:
        if region and region != settings.region:
            found.append(
                f"you deploy to {region} but stage {stage!r} is set up for {settings.region} "
                f"(its layer, secret and queue ARNs): python -m deploy.aws_stage set --stage "
                f"{stage} --region {region}"
            )
        region = settings.region
        if not allow_placeholders:
            found += [
                f"stage {stage!r}: {p}; set it with python -m deploy.aws_stage set --stage "
                f"{stage} ... (or pass --allow-placeholders to only measure)"
                for p in settings.placeholders()
            ]
    found += [
        f"stale generated file {n}: python -m deploy.aws_stage generate"
        for n in aws_stage.stale_files()
    ]
    layer_warnings = check_layers(stage, region)
    placeholder = [w for w in layer_warnings if "is the placeholder" in w]
    found += [w for w in layer_warnings if w not in placeholder]
    if not allow_placeholders:
        found += placeholder
    return found


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
        help="the region you deploy to: must be the stage's (deploy/aws-stages.json)",
    )
    parser.add_argument(
        "--allow-placeholders",
        action="store_true",
        help="build and measure even with the shipped placeholder account/folder/layer",
    )
    args = parser.parse_args(argv)
    if problem := check_python():
        print(f"error: {problem}", file=sys.stderr)
        return 1
    problems = deploy_problems(args.stage, args.region, args.allow_placeholders)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        return 1
    try:
        report = build(args.stage, args.out.resolve(), args.pkg_format)
    except PackageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    built = "deployment.zip" + (" and layer.zip" if report.layer else "")
    print(f"packaged stage {args.stage!r} ({args.pkg_format}): {built} in {report.zip_path.parent}")
    for line in report.lines():
        print("  " + line)
    problems = report.problems()
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
