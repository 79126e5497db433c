"""One place for a deployable AWS stage's account, region and names; everything else follows.

``deploy/aws-stages.json`` holds, per stage, the account, region, bucket names and Drive folder
(plus memory, timeouts, log retention and reserved concurrency). From it this module generates
``chalice_app/.chalice/config.json`` (the ``local`` stage is kept as it is) and one policy file
per function, ``policy-<stage>-<function>.json`` (:mod:`deploy.aws_policy`), and prints the
AWS CLI commands that create what the functions expect to exist (buckets, secret, queues) and,
after ``chalice deploy``, what Chalice cannot set (failure destinations, partial batch
responses)::

    python -m deploy.aws_stage set --stage dev --account 123456789012 --region eu-west-1 \\
        --input-bucket acme-drive-in --output-bucket acme-drive-out --drive-folder-id 1AbC...
    python -m deploy.aws_stage generate            # after editing deploy/aws-stages.json
    python -m deploy.aws_stage check               # exit 1 if the generated files are stale
    python -m deploy.aws_stage commands --stage dev [--after-deploy]

Derived names: secret ``drivepipe/<stage>/drive``, queues ``drivepipe-work-<stage>`` (+
``-dlq``) and ``drivepipe-failed-<stage>`` (the on-failure destination of the asynchronous
S3 and EventBridge invocations), functions ``drivepipe-<stage>[-<handler>]``, layer
``drivepipe-python311``; run notifications: SNS topic ``drivepipe-alerts-<stage>``
(``notify_sns``, on by default) and webhook secret ``drivepipe/<stage>/webhook``
(``notify_webhook``, off by default); Drive push notifications (``push``, off by default): queue
``drivepipe-push-<stage>`` (+ ``-dlq``), consumed by ``push_worker``, channel tokens under
``drivepipe/<stage>/channels/``, and ``push_address``, the public URL of
``POST /drive/notifications`` (known after the first deploy); tables registered in Glue
(``glue``, on by default): database ``drivepipe_<stage>`` (``glue_database`` to name another).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from deploy import aws_policy
from deploy.aws_commands import (  # the commands around `chalice deploy` (re-exported)
    RETENTION_SECONDS,
    VISIBILITY_FACTOR,
    after_deploy_commands,
    queues,
    setup_commands,
)

__all__ = [
    "RETENTION_SECONDS",
    "VISIBILITY_FACTOR",
    "AwsStage",
    "StageError",
    "after_deploy_commands",
    "load_stage",
    "load_stages",
    "queues",
    "setup_commands",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
STAGES_FILE = Path(__file__).with_name("aws-stages.json")
CHALICE_DIR = REPO_ROOT / "chalice_app" / ".chalice"
APP_NAME = "drivepipe"
LAYER_NAME = "drivepipe-python311"
PLACEHOLDER_ACCOUNT = "111122223333"
PLACEHOLDER_FOLDER = "REPLACE_WITH_DRIVE_FOLDER_ID"
DEFAULT_MEMORY = {"on_schedule": 3008, "fanout_dead_letter": 512, "failed_events": 512}
DEFAULT_TIMEOUT = {"fanout_worker": 300, "fanout_dead_letter": 60, "failed_events": 60}
NOTIFICATIONS_PATH = "/drive/notifications"  # the webhook's route (chalice_app/app.py)


class StageError(ValueError):
    """A stage's settings are missing or invalid (names the field)."""


@dataclass(frozen=True)
class AwsStage:
    """A deployable stage, as ``deploy/aws-stages.json`` describes it."""

    name: str
    account: str
    region: str
    input_bucket: str
    output_bucket: str
    drive_folder_id: str = PLACEHOLDER_FOLDER
    layer_version: int = 1
    http_auth: str = "iam"
    fanout: bool = True
    fanout_max_concurrency: int = 4
    log_retention_days: int = 30
    memory: int = 2048
    memory_by_function: dict[str, int] = field(default_factory=dict)
    timeout_by_function: dict[str, int] = field(default_factory=dict)
    reserved_concurrency: dict[str, int] = field(default_factory=dict)
    notify_sns: bool = True  # run notifications to the alerts topic
    notify_webhook: bool = False  # ...and to a webhook whose URL is in a secret
    push: bool = False  # Drive push notifications: the public route, push_worker, its queue
    push_address: str = ""  # https://.../api/drive/notifications, once the API exists
    glue: bool = True  # the functions may register tables in the stage's Glue database
    glue_database: str = ""  # that database; empty: drivepipe_<stage>

    def __post_init__(self) -> None:
        if not (self.account.isdigit() and len(self.account) == 12):
            raise StageError(f"stages.{self.name}.account: {self.account!r} is not 12 digits")
        if self.region.count("-") < 2:
            raise StageError(f"stages.{self.name}.region: {self.region!r} is not a region")
        if self.input_bucket == self.output_bucket:
            raise StageError(f"stages.{self.name}: input and output bucket must differ")
        unknown = set(self.reserved_concurrency) - set(aws_policy.GRANTS)
        if unknown:
            raise StageError(f"stages.{self.name}.reserved_concurrency: unknown {unknown}")
        address = self.push_address
        webhook = address.startswith("https://") and address.endswith(NOTIFICATIONS_PATH)
        if address and not webhook:
            raise StageError(
                f"stages.{self.name}.push_address: {address!r} is not the https:// URL of "
                f"{NOTIFICATIONS_PATH} (Drive delivers to HTTPS only): $(chalice url) + "
                f"{NOTIFICATIONS_PATH.lstrip('/')}"
            )

    # ---- names ----------------------------------------------------------------------------
    @property
    def secret_name(self) -> str:
        """The Drive credentials' Secrets Manager name."""
        return f"{APP_NAME}/{self.name}/drive"

    @property
    def work_queue(self) -> str:
        """The fan-out work queue."""
        return f"{APP_NAME}-work-{self.name}"

    @property
    def dead_letter_queue(self) -> str:
        """The work queue's dead-letter queue."""
        return f"{self.work_queue}-dlq"

    @property
    def failure_queue(self) -> str:
        """On-failure destination of on_upload and on_schedule (asynchronous invocations)."""
        return f"{APP_NAME}-failed-{self.name}"

    @property
    def alerts_topic(self) -> str:
        """The SNS topic run notifications are published to."""
        return f"{APP_NAME}-alerts-{self.name}"

    @property
    def webhook_secret_name(self) -> str:
        """The Secrets Manager secret holding the notification webhook's URL."""
        return f"{APP_NAME}/{self.name}/webhook"

    @property
    def push_queue(self) -> str:
        """The queue notifications hand their syncs to (consumed by ``push_worker``)."""
        return f"{APP_NAME}-push-{self.name}"

    @property
    def push_dead_letter_queue(self) -> str:
        """Where push messages go after 5 failed receives (the schedule's reconcile heals)."""
        return f"{self.push_queue}-dlq"

    @property
    def channel_secrets_prefix(self) -> str:
        """Channel tokens are secrets ``<prefix>/<pipeline>/<channel id>``."""
        return f"{APP_NAME}/{self.name}/channels"

    @property
    def glue_database_name(self) -> str:
        """The Glue database the functions may register tables in (``catalog.glue.database``)."""
        return self.glue_database or f"{APP_NAME}_{self.name}"

    @property
    def layer_arn(self) -> str:
        """Our layer's version ARN in this stage's region and account."""
        return (
            f"arn:aws:lambda:{self.region}:{self.account}:layer:{LAYER_NAME}:{self.layer_version}"
        )

    def function_name(self, function: str) -> str:
        """The deployed name: Chalice calls the API handler ``<app>-<stage>``."""
        base = f"{APP_NAME}-{self.name}"
        return base if function == "api_handler" else f"{base}-{function}"

    def log_group(self, function: str) -> str:
        """The function's CloudWatch log group."""
        return f"/aws/lambda/{self.function_name(function)}"

    def queue_arn(self, queue: str) -> str:
        """An SQS queue's ARN in this stage."""
        return f"arn:aws:sqs:{self.region}:{self.account}:{queue}"

    def secret_arn(self, name: str) -> str:
        """A secret's ARN without the 6 random characters Secrets Manager appends (a partial
        ARN: accepted as a ``SecretId``)."""
        return f"arn:aws:secretsmanager:{self.region}:{self.account}:secret:{name}"

    def arns(self) -> dict[str, str]:
        """Resource kinds (as :data:`deploy.aws_policy.GRANT_ACTIONS` names them) to ARNs."""
        secret = self.secret_arn(self.secret_name)
        glue = f"arn:aws:glue:{self.region}:{self.account}"
        return {
            "input_bucket": f"arn:aws:s3:::{self.input_bucket}",
            "input_objects": f"arn:aws:s3:::{self.input_bucket}/*",
            "output_bucket": f"arn:aws:s3:::{self.output_bucket}",
            "output_objects": f"arn:aws:s3:::{self.output_bucket}/*",
            "secret": secret + "-??????",  # Secrets Manager appends 6 random characters
            "work_queue": self.queue_arn(self.work_queue),
            "dead_letter_queue": self.queue_arn(self.dead_letter_queue),
            "failure_queue": self.queue_arn(self.failure_queue),
            "alerts_topic": f"arn:aws:sns:{self.region}:{self.account}:{self.alerts_topic}",
            "webhook_secret": self.secret_arn(self.webhook_secret_name) + "-??????",
            "push_queue": self.queue_arn(self.push_queue),
            # one secret per channel, created at renewal: the stage's prefix, any name below it
            "channel_secrets": self.secret_arn(self.channel_secrets_prefix) + "/*",
            "glue_catalog": f"{glue}:catalog",
            "glue_database": f"{glue}:database/{self.glue_database_name}",
            "glue_tables": f"{glue}:table/{self.glue_database_name}/*",
        }

    def timeout(self, function: str) -> int:
        """The function's timeout in seconds (900 unless set)."""
        return self.timeout_by_function.get(function, DEFAULT_TIMEOUT.get(function, 900))

    def placeholders(self) -> list[str]:
        """Settings still holding the shipped placeholders."""
        found = []
        if self.account == PLACEHOLDER_ACCOUNT:
            found.append(f"account is the placeholder {PLACEHOLDER_ACCOUNT}")
        if self.drive_folder_id == PLACEHOLDER_FOLDER:
            found.append(f"DRIVE_FOLDER_ID={PLACEHOLDER_FOLDER}")
        return found

    def notes(self) -> list[str]:
        """What is still to do that does not stop a deploy (printed by ``commands``)."""
        if self.push and not self.push_address:
            return [
                "push is on but push_address is not set: after the first `chalice deploy`, "
                f"python -m deploy.aws_stage set --stage {self.name} --push-address "
                f'"$(chalice url --stage {self.name}){NOTIFICATIONS_PATH.lstrip("/")}", then '
                "deploy again (until then the schedule cannot open a channel)"
            ]
        return []

    # ---- generated files ------------------------------------------------------------------
    def environment(self) -> dict[str, str]:
        """The functions' environment variables."""
        env = {
            "DRIVEPIPE_HTTP_AUTH": self.http_auth,
            "DRIVEPIPE_INPUT_BUCKET": self.input_bucket,
            "DRIVEPIPE_OUTPUT_BUCKET": self.output_bucket,
            "DRIVEPIPE_CONFIG": "chalicelib/drivepipe.toml",
            "DRIVE_SECRET_ARN": self.arns()["secret"].removesuffix("-??????"),
            "DRIVE_FOLDER_ID": self.drive_folder_id,
            "DRIVEPIPE_FAILURE_QUEUE": self.failure_queue,
        }
        if self.fanout:
            env |= {
                "DRIVEPIPE_FANOUT_QUEUE": self.work_queue,
                "DRIVEPIPE_FANOUT_DLQ": self.dead_letter_queue,
                "DRIVEPIPE_FANOUT_MAX_CONCURRENCY": str(self.fanout_max_concurrency),
            }
        if self.notify_sns:
            env["DRIVEPIPE_NOTIFY_SNS_TOPIC"] = self.arns()["alerts_topic"]
        if self.notify_webhook:
            env["DRIVEPIPE_NOTIFY_WEBHOOK_SECRET"] = self.secret_arn(self.webhook_secret_name)
        if self.push:  # every function: any sync of a push pipeline may hand one more off
            env |= {
                "DRIVEPIPE_PUSH": "true",
                "DRIVEPIPE_PUSH_QUEUE": self.push_queue,
                "DRIVEPIPE_CHANNEL_SECRETS": f"aws-sm:{self.channel_secrets_prefix}",
            }
            if self.push_address:
                env["DRIVEPIPE_PUSH_ADDRESS"] = self.push_address
        return env

    def chalice_stage(self) -> dict[str, Any]:
        """The stage's block of ``.chalice/config.json``: one role and policy per function."""
        functions = {}
        for function in aws_policy.functions(self):
            entry: dict[str, Any] = {
                "iam_policy_file": policy_file(self.name, function),
                "lambda_timeout": self.timeout(function),
                "lambda_memory_size": self.memory_by_function.get(
                    function, DEFAULT_MEMORY.get(function, self.memory)
                ),
            }
            if function in self.reserved_concurrency:
                entry["reserved_concurrency"] = self.reserved_concurrency[function]
            functions[function] = entry
        return {
            "api_gateway_stage": "api",
            "autogen_policy": False,
            "lambda_memory_size": self.memory,
            "lambda_timeout": 900,
            "layers": [self.layer_arn],
            "environment_variables": self.environment(),
            "lambda_functions": functions,
        }


def policy_file(stage: str, function: str) -> str:
    """The policy file's name in ``.chalice/``."""
    return f"policy-{stage}-{function}.json"


def load_stages(path: Path = STAGES_FILE) -> dict[str, AwsStage]:
    """Every stage of the settings file, validated."""
    raw = json.loads(path.read_text())
    stages = {}
    for name, settings in raw.get("stages", {}).items():
        try:
            stages[name] = AwsStage(name=name, **settings)
        except TypeError as exc:
            raise StageError(f"stages.{name}: {exc}") from None
    return stages


def load_stage(name: str, path: Path = STAGES_FILE) -> AwsStage:
    """One stage; :class:`StageError` naming the known ones when it is missing."""
    stages = load_stages(path)
    if name not in stages:
        raise StageError(f"stage {name!r} is not in {path.name} ({', '.join(stages)})")
    return stages[name]


def save_stage(stage: AwsStage, path: Path = STAGES_FILE) -> None:
    """Write ``stage`` into the settings file (other stages kept)."""
    raw = json.loads(path.read_text()) if path.exists() else {"stages": {}}
    settings = asdict(stage)
    del settings["name"]
    raw.setdefault("stages", {})[stage.name] = settings
    path.write_text(json.dumps(raw, indent=2) + "\n")


def rendered(stages: dict[str, AwsStage], chalice_dir: Path = CHALICE_DIR) -> dict[str, str]:
    """File name in ``.chalice/`` -> content, for ``config.json`` and every policy file."""
    config_path = chalice_dir / "config.json"
    config = json.loads(config_path.read_text()) if config_path.exists() else {}
    kept = {k: v for k, v in config.get("stages", {}).items() if k not in stages}
    config = {"version": "2.0", "app_name": APP_NAME, "stages": {}}
    files = {}
    for name, stage in stages.items():
        config["stages"][name] = stage.chalice_stage()
        for function in aws_policy.functions(stage):
            policy = aws_policy.function_policy(function, stage)
            files[policy_file(name, function)] = json.dumps(policy, indent=2) + "\n"
    config["stages"].update(kept)
    files["config.json"] = json.dumps(config, indent=2) + "\n"
    return files


def generate(chalice_dir: Path = CHALICE_DIR, path: Path = STAGES_FILE) -> list[str]:
    """Write the generated files (and remove stale policy files); returns what changed."""
    files = rendered(load_stages(path), chalice_dir)
    changed = [n for n, text in files.items() if _read(chalice_dir / n) != text]
    for name in changed:
        (chalice_dir / name).write_text(files[name])
    for stale in chalice_dir.glob("policy-*.json"):
        if stale.name not in files:
            stale.unlink()
            changed.append(f"-{stale.name}")
    return changed


def stale_files(chalice_dir: Path = CHALICE_DIR, path: Path = STAGES_FILE) -> list[str]:
    """Generated files that differ from what the settings say (empty when all are current)."""
    files = rendered(load_stages(path), chalice_dir)
    stale = [n for n, text in files.items() if _read(chalice_dir / n) != text]
    extra = [p.name for p in chalice_dir.glob("policy-*.json") if p.name not in files]
    return stale + extra


def _read(path: Path) -> str | None:
    return path.read_text() if path.exists() else None


def main(argv: list[str] | None = None) -> int:
    """CLI: set, generate, check, commands."""

    parser = argparse.ArgumentParser(prog="python -m deploy.aws_stage", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    setter = sub.add_parser("set", help="set a stage's settings, then generate")
    setter.add_argument("--stage", required=True)
    for name in ("account", "region", "input-bucket", "output-bucket", "drive-folder-id"):
        setter.add_argument(f"--{name}")
    setter.add_argument("--layer-version", type=int)
    setter.add_argument("--push-address", help="https://.../api/drive/notifications")
    for flag, what in (
        ("push", "Drive push notifications"),
        ("notify-sns", "run notifications to drivepipe-alerts-<stage>"),
        ("notify-webhook", "run notifications to the webhook in drivepipe/<stage>/webhook"),
    ):
        setter.add_argument(f"--{flag}", action=argparse.BooleanOptionalAction, help=what)
    sub.add_parser("generate", help="write config.json and the policy files")
    sub.add_parser("check", help="exit 1 when the generated files are stale")
    commands = sub.add_parser("commands", help="print the AWS CLI commands of a stage")
    commands.add_argument("--stage", required=True)
    commands.add_argument("--after-deploy", action="store_true")
    args = parser.parse_args(argv)
    try:
        if args.command == "set":
            known = load_stages()
            base = known.get(args.stage)
            changes = {
                k: v
                for k, v in vars(args).items()
                if k not in ("command", "stage") and v is not None
            }
            if base is None:
                stage = AwsStage(name=args.stage, **changes)
            else:
                stage = replace(base, **changes)
            save_stage(stage)
            args.command = "generate"
        if args.command == "generate":
            for name in generate():
                print(f"wrote chalice_app/.chalice/{name}".replace("/-", "/ (removed) "))
            return 0
        if args.command == "check":
            stale = stale_files()
            for name in stale:
                print(f"stale: chalice_app/.chalice/{name} (python -m deploy.aws_stage generate)")
            return 1 if stale else 0
        stage = load_stage(args.stage)
    except (StageError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    lines = after_deploy_commands(stage) if args.after_deploy else setup_commands(stage)
    for problem in stage.placeholders():
        print(f"# WARNING: {problem}: python -m deploy.aws_stage set --stage {stage.name} ...")
    for note in stage.notes():
        print(f"# NOTE: {note}")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
