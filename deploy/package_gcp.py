"""Package and deploy the Cloud Functions (gen2): vendor ``shared/``, then print or run gcloud.

``python -m deploy.package_gcp --project P --region R --input-bucket IN --output-bucket OUT``
prints every command (setup, deploy, scheduler) so they can be reviewed and pasted;
``--run`` vendors ``shared/`` into ``gcp_functions/shared/`` and runs them in order, stopping
at the first failure; ``--teardown`` prints (or with ``--run`` runs) the commands that remove
everything again. Only ``--source`` is uploaded, so the core must sit inside it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from deploy import locks, vendor

REPO_ROOT = Path(__file__).resolve().parent.parent
SOURCE_DIR = REPO_ROOT / "gcp_functions"
SHARED_DIR = REPO_ROOT / "shared"
SOURCE_FILES = ("main.py", "requirements.txt", "drivepipe.toml", ".gcloudignore")
# Substituted at run time; printed as a shell command substitution.
GCS_AGENT = "{GCS_SERVICE_AGENT}"
RUNTIMES = ("python311", "python312")
HTTP_MAX_TIMEOUT_S = 3600
GCS_BUCKET_METADATA_OFF = "DISABLE_GCS_PYTHON_CLIENT_OTEL_BUCKET_METADATA"
EVENT_MAX_TIMEOUT_S = 540
SERVICES = (
    "cloudfunctions.googleapis.com",
    "run.googleapis.com",
    "cloudbuild.googleapis.com",
    "artifactregistry.googleapis.com",
    "eventarc.googleapis.com",
    "pubsub.googleapis.com",
    "cloudscheduler.googleapis.com",
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
    "iam.googleapis.com",  # service accounts are created below
)
# The build service account's role (Cloud Build writes the image and its logs as it).
BUILD_ROLE = "roles/cloudbuild.builds.builder"
# Where the generated script stages the deploy source: the function files + a copy of shared/.
STAGED_SOURCE = REPO_ROOT / "build" / "gcp" / "source"


@dataclass(frozen=True)
class Command:
    """One gcloud invocation plus a comment saying why it is there."""

    argv: tuple[str, ...]
    why: str = ""
    # Placeholders resolved at run time by a shell snippet (printed as "$(snippet)").
    lookups: tuple[tuple[str, str], ...] = ()
    # Create-or-update: ``probe`` exits 0 when the resource exists; then ``update`` runs
    # instead of ``argv`` (nothing runs when ``update`` is empty), so a re-run never stops at
    # ALREADY_EXISTS.
    probe: tuple[str, ...] = ()
    update: tuple[str, ...] = ()

    def script(self) -> str:
        """What the generated script runs: :meth:`shell`, guarded by the probe if any."""
        create = self.shell(multiline=True)
        if not self.probe:
            return create
        probe = shlex.join(self.probe) + " >/dev/null 2>&1"
        if not self.update:
            return f"{probe} ||\n  " + create.replace("\n", "\n  ")
        update = replace(self, argv=self.update, probe=(), update=()).shell(multiline=True)
        indent = lambda text: "  " + text.replace("\n", "\n  ")  # noqa: E731
        return f"if {probe}; then\n{indent(update)}\nelse\n{indent(create)}\nfi"

    def shell(self, gcs_agent: str | None = None, *, multiline: bool = False) -> str:
        """The command for a shell (the GCS service agent as ``$(...)`` if unknown).

        ``multiline`` puts each ``--flag`` on its own continued line, for reading.
        """
        words = []
        for word in self.argv:
            looked_up = [(k, v) for k, v in self.lookups if k in word]
            if looked_up:
                for placeholder, snippet in looked_up:
                    word = word.replace(placeholder, f"$({snippet})")
                words.append('"' + word + '"')
            elif GCS_AGENT in word and gcs_agent is None:
                lookup = f"$(gcloud storage service-agent --project={self.project()})"
                words.append('"' + word.replace(GCS_AGENT, lookup) + '"')
            else:
                words.append(shlex.quote(word.replace(GCS_AGENT, gcs_agent or GCS_AGENT)))
        if not multiline:
            return " ".join(words)
        lines = [""]
        for raw, word in zip(self.argv, words, strict=True):
            if raw.startswith("--") and lines[-1]:
                lines.append("  ")
            lines[-1] += (" " if lines[-1].strip() else "") + word
        return " \\\n".join(lines)

    def project(self) -> str:
        """The ``--project`` value of this command."""
        for word in self.argv:
            if word.startswith("--project="):
                return word.split("=", 1)[1]
        if self.argv[1:3] == ("projects", "add-iam-policy-binding"):
            return self.argv[3]
        raise ValueError(f"command has no --project: {self.argv}")


@dataclass(frozen=True)
class DeployConfig:
    """Everything the gcloud commands need; defaults suit one small project."""

    project: str
    region: str
    input_bucket: str
    output_bucket: str
    runtime: str = "python311"
    prefix: str = "drivepipe"
    secret: str = "drive-sa"
    secret_file: str = "drive-sa.json"
    drive_folder_id: str | None = None
    schedule: str = "0 * * * *"
    time_zone: str = "Etc/UTC"
    scheduled_pipelines: tuple[str, ...] = ()
    http_memory: str = "2Gi"
    event_memory: str = "2Gi"
    http_timeout_s: int = HTTP_MAX_TIMEOUT_S
    event_timeout_s: int = EVENT_MAX_TIMEOUT_S
    max_instances: int = 10
    fanout: bool = False  # a work topic + fanout_worker/fanout_dead_letter (big syncs)
    fanout_max_instances: int = 5  # workers at once: keeps Drive under its quota
    fanout_timeout_s: int = 300
    fanout_max_delivery_attempts: int = 5  # Pub/Sub allows 5..100
    push: bool = False  # Drive push notifications: drive_notifications + push_worker
    bigquery_dataset: str | None = None  # catalog.bigquery: the functions register tables here
    source: Path = STAGED_SOURCE
    extra_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, not {self.runtime!r}")
        if not 1 <= self.http_timeout_s <= HTTP_MAX_TIMEOUT_S:
            raise ValueError(f"HTTP timeout must be 1..{HTTP_MAX_TIMEOUT_S} s")
        if not 1 <= self.event_timeout_s <= EVENT_MAX_TIMEOUT_S:
            raise ValueError(f"event timeout must be 1..{EVENT_MAX_TIMEOUT_S} s")
        for name, bucket in (("input", self.input_bucket), ("output", self.output_bucket)):
            if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]", bucket):
                raise ValueError(f"{name} bucket {bucket!r} is not a valid GCS bucket name")
        if not 5 <= self.fanout_max_delivery_attempts <= 100:
            raise ValueError("Pub/Sub max delivery attempts must be 5..100")
        if self.input_bucket == self.output_bucket:
            raise ValueError(
                "input and output buckets must differ: a finalize trigger on the "
                "output bucket would fire for every file the functions write"
            )

    @property
    def runtime_sa(self) -> str:
        """The functions' own identity (least privilege, see :func:`setup_commands`)."""
        return f"{self.prefix}-fn@{self.project}.iam.gserviceaccount.com"

    @property
    def build_sa(self) -> str:
        """The identity Cloud Build builds the functions as (not the default compute SA)."""
        return f"{self.prefix}-build@{self.project}.iam.gserviceaccount.com"

    @property
    def trigger_sa(self) -> str:
        """The identity Eventarc uses to invoke the event functions."""
        return f"{self.prefix}-trigger@{self.project}.iam.gserviceaccount.com"

    @property
    def topic(self) -> str:
        return f"{self.prefix}-schedule"

    @property
    def work_topic(self) -> str:
        """Fan-out work items are published here."""
        return f"{self.prefix}-work"

    @property
    def dead_topic(self) -> str:
        """The work subscription dead-letters here."""
        return f"{self.prefix}-work-dead"

    @property
    def notify_topic(self) -> str:
        """Run notifications (``[settings.notify] pubsub_topic``) are published here."""
        return f"{self.prefix}-alerts"

    def function_name(self, entry_point: str) -> str:
        """Deployed name of an entry point, e.g. ``drivepipe-sync`` for ``sync_http``."""
        suffix = {
            "sync_http": "sync",
            "on_upload": "upload",
            "on_schedule": "schedule",
            "fanout_worker": "work",
            "fanout_dead_letter": "dead-letter",
            "drive_notifications": "notifications",
            "push_worker": "push",
        }
        return f"{self.prefix}-{suffix[entry_point]}"

    def env_vars(self) -> dict[str, str]:
        """Runtime environment: what ``drivepipe.toml`` interpolates."""
        env = {
            "DRIVEPIPE_INPUT_BUCKET": self.input_bucket,
            "DRIVEPIPE_OUTPUT_BUCKET": self.output_bucket,
            "DRIVEPIPE_LOG_LEVEL": "INFO",
            # google-cloud-storage >= 3.5 fetches each bucket's metadata (buckets.get) in the
            # background for trace attributes; the runtime roles grant objects.* only, so that
            # call would be refused on every cold start. The core itself never needs it.
            GCS_BUCKET_METADATA_OFF: "true",
        }
        if self.drive_folder_id:
            env["DRIVE_FOLDER_ID"] = self.drive_folder_id
        if self.fanout:
            env["DRIVEPIPE_FANOUT_TOPIC"] = f"projects/{self.project}/topics/{self.work_topic}"
        if self.push:
            from deploy.push_gcp import push_env

            env.update(push_env(self))
        env["DRIVEPIPE_NOTIFY_TOPIC"] = f"projects/{self.project}/topics/{self.notify_topic}"
        env.update(self.extra_env)
        return env


def _flag_list(values: dict[str, str]) -> str:
    """``K=V,K2=V2``, switching gcloud's delimiter when a value contains a comma."""
    delimiter = ","
    if any("," in v for v in values.values()):
        delimiter = "|"
        if any("|" in v for v in values.values()):
            raise ValueError("environment values may not contain both ',' and '|'")
    joined = delimiter.join(f"{k}={v}" for k, v in values.items())
    return joined if delimiter == "," else f"^{delimiter}^{joined}"


def _cmd(*words: str, why: str = "") -> Command:
    return _idempotent(Command(tuple(words), why))


def _option(argv: tuple[str, ...], name: str) -> str:
    return next(w for w in argv if w.startswith(f"--{name}="))


def _idempotent(command: Command) -> Command:
    """Give a ``create`` command the probe (and update) that make re-running it safe."""
    argv = command.argv
    project = _option(argv, "project") if any(w.startswith("--project=") for w in argv) else ""
    if argv[1:4] == ("scheduler", "jobs", "create"):
        probe = ("gcloud", "scheduler", "jobs", "describe", argv[5], project,
                 _option(argv, "location"))  # fmt: skip
        update = (*argv[:3], "update", *argv[4:])
        return replace(command, probe=probe, update=update)
    describe = {
        ("pubsub", "topics", "create"): lambda: ("gcloud", "pubsub", "topics", "describe", argv[4]),
        ("secrets", "create"): lambda: ("gcloud", "secrets", "describe", argv[3]),
        ("storage", "buckets", "create"): lambda: (
            "gcloud", "storage", "buckets", "describe", argv[4],
        ),
        ("iam", "service-accounts", "create"): lambda: (
            "gcloud", "iam", "service-accounts", "describe",
            f"{argv[4]}@{project.split('=', 1)[1]}.iam.gserviceaccount.com",
        ),
    }  # fmt: skip
    for prefix, probe in describe.items():
        if argv[1 : 1 + len(prefix)] == prefix:
            return replace(command, probe=(*probe(), project))
    return command


def setup_commands(cfg: DeployConfig) -> list[Command]:
    """APIs, buckets, secret, service accounts and least-privilege grants; run once."""
    p = f"--project={cfg.project}"
    fn_member = f"--member=serviceAccount:{cfg.runtime_sa}"
    trigger_member = f"--member=serviceAccount:{cfg.trigger_sa}"
    return [
        _cmd("gcloud", "services", "enable", *SERVICES, p, why="APIs the deployment uses"),
        *(
            _cmd(
                "gcloud",
                "storage",
                "buckets",
                "create",
                f"gs://{bucket}",
                p,
                f"--location={cfg.region}",
                "--uniform-bucket-level-access",
                why=f"{role} bucket, in the functions' region",
            )
            for role, bucket in (
                ("input (trigger)", cfg.input_bucket),
                ("output", cfg.output_bucket),
            )
        ),
        _cmd(
            "gcloud",
            "secrets",
            "create",
            cfg.secret,
            p,
            "--replication-policy=automatic",
            f"--data-file={cfg.secret_file}",
            why="Drive service-account key; share the Drive folder with its client_email",
        ),
        _cmd(
            "gcloud",
            "iam",
            "service-accounts",
            "create",
            f"{cfg.prefix}-fn",
            p,
            "--display-name=drivepipe functions runtime",
            why="runtime identity",
        ),
        _cmd(
            "gcloud",
            "iam",
            "service-accounts",
            "create",
            f"{cfg.prefix}-trigger",
            p,
            "--display-name=drivepipe event triggers",
            why="Eventarc trigger identity",
        ),
        _cmd(
            "gcloud",
            "iam",
            "service-accounts",
            "create",
            f"{cfg.prefix}-build",
            p,
            "--display-name=drivepipe function builds",
            why="build identity: new projects no longer let Cloud Build use a default account",
        ),
        _cmd(
            "gcloud",
            "projects",
            "add-iam-policy-binding",
            cfg.project,
            f"--member=serviceAccount:{cfg.build_sa}",
            f"--role={BUILD_ROLE}",
            "--condition=None",
            why="the build SA reads the uploaded source, pushes the image, writes build logs",
        ),
        _cmd(
            "gcloud",
            "storage",
            "buckets",
            "add-iam-policy-binding",
            f"gs://{cfg.input_bucket}",
            fn_member,
            "--role=roles/storage.objectViewer",
            why="read uploads and requests",
        ),
        _cmd(
            "gcloud",
            "storage",
            "buckets",
            "add-iam-policy-binding",
            f"gs://{cfg.output_bucket}",
            fn_member,
            "--role=roles/storage.objectAdmin",
            why="write outputs, manifests and state",
        ),
        _cmd(
            "gcloud",
            "secrets",
            "add-iam-policy-binding",
            cfg.secret,
            p,
            fn_member,
            "--role=roles/secretmanager.secretAccessor",
            why="read the Drive key",
        ),
        _cmd(
            "gcloud",
            "projects",
            "add-iam-policy-binding",
            cfg.project,
            trigger_member,
            "--role=roles/eventarc.eventReceiver",
            why="let the trigger SA receive events",
        ),
        _cmd(
            "gcloud",
            "projects",
            "add-iam-policy-binding",
            cfg.project,
            f"--member=serviceAccount:{GCS_AGENT}",
            "--role=roles/pubsub.publisher",
            why="Cloud Storage publishes finalize events through Pub/Sub",
        ),
        _cmd("gcloud", "pubsub", "topics", "create", cfg.topic, p, why="Cloud Scheduler target"),
        _cmd(
            "gcloud",
            "pubsub",
            "topics",
            "create",
            cfg.notify_topic,
            p,
            why="run notifications (subscribe e-mail, Slack or anything else to it)",
        ),
        _cmd(
            "gcloud",
            "pubsub",
            "topics",
            "add-iam-policy-binding",
            cfg.notify_topic,
            p,
            fn_member,
            "--role=roles/pubsub.publisher",
            why="the functions publish run notifications",
        ),
        *(fanout_setup_commands(cfg) if cfg.fanout else []),
        *(_push_setup(cfg) if cfg.push else []),
        *(bigquery_setup_commands(cfg) if cfg.bigquery_dataset else []),
    ]


def bigquery_setup_commands(cfg: DeployConfig) -> list[Command]:
    """Let the functions register their tables in one BigQuery dataset (catalog.bigquery):
    bigquery.tables.get/create/update there, nothing project-wide. BigQuery reads the table's
    reference file with the caller's rights: the runtime SA can read the output bucket already.
    """
    return [
        _cmd(
            "bq",
            "add-iam-policy-binding",
            f"--member=serviceAccount:{cfg.runtime_sa}",
            "--role=roles/bigquery.dataEditor",
            f"{cfg.project}:{cfg.bigquery_dataset}",
            why="create and update the pipelines' external tables (docs/tables.md)",
        )
    ]


def runtime_bucket_grants(cfg: DeployConfig) -> dict[str, list[str]]:
    """Bucket -> roles the runtime service account gets, read off :func:`setup_commands`.

    The permission proxy (``devstack.gcs_permission_proxy``) enforces exactly these in tests.
    """
    grants: dict[str, list[str]] = {}
    member = f"--member=serviceAccount:{cfg.runtime_sa}"
    for command in setup_commands(cfg):
        argv = command.argv
        if argv[1:4] == ("storage", "buckets", "add-iam-policy-binding") and member in argv:
            role = next(w.split("=", 1)[1] for w in argv if w.startswith("--role="))
            grants.setdefault(argv[4].removeprefix("gs://"), []).append(role)
    return grants


def _invoker_bindings(cfg: DeployConfig, *entry_points: str) -> list[Command]:
    """Let the trigger service account invoke each event function (gen2 runs on Cloud Run)."""
    return [
        _cmd(
            "gcloud",
            "functions",
            "add-invoker-policy-binding",
            cfg.function_name(entry_point),
            f"--project={cfg.project}",
            f"--region={cfg.region}",
            f"--member=serviceAccount:{cfg.trigger_sa}",
            why="the trigger SA may invoke the event function",
        )
        for entry_point in entry_points
    ]


def deploy_commands(cfg: DeployConfig) -> list[Command]:
    """The three ``gcloud functions deploy`` commands, invoker grants and the scheduler job."""
    p, r = f"--project={cfg.project}", f"--region={cfg.region}"
    common = (
        "--gen2",
        p,
        r,
        f"--runtime={cfg.runtime}",
        f"--source={cfg.source}",
        f"--service-account={cfg.runtime_sa}",
        f"--build-service-account=projects/{cfg.project}/serviceAccounts/{cfg.build_sa}",
        f"--set-env-vars={_flag_list(cfg.env_vars())}",
        f"--set-secrets=DRIVE_SERVICE_ACCOUNT_JSON={cfg.secret}:latest",
        f"--max-instances={cfg.max_instances}",  # caps cost when a burst of uploads arrives
    )
    event = (
        "--retry",
        f"--trigger-service-account={cfg.trigger_sa}",
        f"--memory={cfg.event_memory}",
        f"--timeout={cfg.event_timeout_s}s",
    )
    message = json.dumps({"pipelines": list(cfg.scheduled_pipelines)})
    commands = [
        *stage_commands(cfg.source),
        _cmd(
            "gcloud",
            "functions",
            "deploy",
            cfg.function_name("sync_http"),
            *common,
            "--entry-point=sync_http",
            "--trigger-http",
            "--no-allow-unauthenticated",
            f"--memory={cfg.http_memory}",
            f"--timeout={cfg.http_timeout_s}s",
            why="POST /sync, GET /runs/<id>, GET /health; callers need roles/run.invoker",
        ),
        _cmd(
            "gcloud",
            "functions",
            "deploy",
            cfg.function_name("on_upload"),
            *common,
            "--entry-point=on_upload",
            f"--trigger-bucket={cfg.input_bucket}",
            *event,
            why="every object finalized in the input bucket (no prefix filter exists)",
        ),
        _cmd(
            "gcloud",
            "functions",
            "deploy",
            cfg.function_name("on_schedule"),
            *common,
            "--entry-point=on_schedule",
            f"--trigger-topic={cfg.topic}",
            *event,
            why="Cloud Scheduler messages on the schedule topic",
        ),
    ]
    commands += _invoker_bindings(cfg, "on_upload", "on_schedule")
    commands.append(
        _cmd(
            "gcloud",
            "scheduler",
            "jobs",
            "create",
            "pubsub",
            f"{cfg.prefix}-hourly",
            p,
            f"--location={cfg.region}",
            f"--schedule={cfg.schedule}",
            f"--time-zone={cfg.time_zone}",
            f"--topic={cfg.topic}",
            f"--message-body={message}",
            why="an empty pipelines list means every pipeline with scheduled = true",
        )
    )
    if cfg.fanout:
        commands += fanout_deploy_commands(cfg, common, event)
    if cfg.push:
        from deploy.push_gcp import push_deploy_commands

        commands += push_deploy_commands(cfg, common, event)
    return [_tell_timeout(cfg, c) for c in commands]


def _tell_timeout(cfg: DeployConfig, command: Command) -> Command:
    """Give a deployed function its own ``--timeout`` as ``DRIVEPIPE_TIMEOUT_SECONDS``: gen2
    has no remaining-time API, and the core's time budget (``shared.deadline``) needs it."""
    timeout = [w.removeprefix("--timeout=") for w in command.argv if w.startswith("--timeout=")]
    if not timeout or not timeout[-1].endswith("s"):
        return command
    env = _flag_list({**cfg.env_vars(), "DRIVEPIPE_TIMEOUT_SECONDS": timeout[-1][:-1]})
    argv = tuple(
        f"--set-env-vars={env}" if w.startswith("--set-env-vars=") else w for w in command.argv
    )
    return replace(command, argv=argv)


def shared_digest(shared_dir: Path = SHARED_DIR) -> str:
    """``sha256sum`` of every ``*.py`` under ``shared/``, sorted, hashed again (16 hex digits).

    The same as the script's ``find shared -name '*.py' | LC_ALL=C sort | xargs sha256sum |
    sha256sum`` run from the repository root.
    """
    listing = ""
    root = shared_dir.parent
    for path in sorted(shared_dir.rglob("*.py"), key=lambda p: str(p.relative_to(root)).encode()):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        listing += f"{digest}  {path.relative_to(root)}\n"
    return hashlib.sha256(listing.encode()).hexdigest()[:16]


def stage_commands(dest: Path) -> list[Command]:
    """Shell steps that build the deploy source in ``dest`` from the working tree (run from the
    repository root): the function files plus a fresh copy of ``shared/``, refused when
    ``shared/`` changed since the script was generated or the copy differs from it."""
    digest = shared_digest()
    check = (
        "test \"$(find shared -name '*.py' -type f | LC_ALL=C sort | xargs sha256sum"
        f' | sha256sum | cut -c1-16)" = {digest}'
        " || { echo 'shared/ changed since this script was generated: generate it again' >&2;"
        " exit 1; }"
    )
    files = [f"{SOURCE_DIR.relative_to(REPO_ROOT)}/{name}" for name in SOURCE_FILES]
    return [
        Command(("bash", "-c", check), "the core this script was generated (and reviewed) for"),
        Command(("rm", "-rf", str(dest)), "a fresh deploy source: only --source is uploaded"),
        Command(("mkdir", "-p", str(dest))),
        Command(("cp", *files, f"{dest}/")),
        Command(("cp", "-R", "shared", f"{dest}/shared"), "vendor the core into the source"),
        Command(
            ("diff", "-r", "-x", "__pycache__", "shared", f"{dest}/shared"),
            "fail on a stale or partial copy",
        ),
    ]


def _push_setup(cfg: DeployConfig) -> list[Command]:
    from deploy.push_gcp import push_setup_commands

    return push_setup_commands(cfg)


def teardown_commands(cfg: DeployConfig) -> list[Command]:
    """Delete what setup and deploy created (buckets last, and only when empty)."""
    p, r = f"--project={cfg.project}", f"--region={cfg.region}"
    commands = [
        _cmd(
            "gcloud",
            "scheduler",
            "jobs",
            "delete",
            f"{cfg.prefix}-hourly",
            p,
            f"--location={cfg.region}",
            "--quiet",
        )
    ]
    entry_points = ["sync_http", "on_upload", "on_schedule"]
    if cfg.fanout:
        entry_points += ["fanout_worker", "fanout_dead_letter"]
    if cfg.push:
        entry_points += ["drive_notifications", "push_worker"]
    for entry_point in entry_points:
        commands.append(
            _cmd("gcloud", "functions", "delete", cfg.function_name(entry_point), p, r, "--quiet")
        )
    if cfg.fanout:
        for topic in (cfg.work_topic, cfg.dead_topic):
            commands.append(_cmd("gcloud", "pubsub", "topics", "delete", topic, p, "--quiet"))
    commands += [
        _cmd("gcloud", "pubsub", "topics", "delete", cfg.topic, p, "--quiet"),
        _cmd("gcloud", "secrets", "delete", cfg.secret, p, "--quiet"),
        _cmd("gcloud", "iam", "service-accounts", "delete", cfg.runtime_sa, p, "--quiet"),
        _cmd("gcloud", "iam", "service-accounts", "delete", cfg.trigger_sa, p, "--quiet"),
        _cmd("gcloud", "iam", "service-accounts", "delete", cfg.build_sa, p, "--quiet"),
        _cmd(
            "gcloud",
            "storage",
            "rm",
            "--recursive",
            f"gs://{cfg.input_bucket}",
            f"gs://{cfg.output_bucket}",
            p,
            why="deletes the buckets AND their data",
        ),
    ]
    return commands


PUBSUB_AGENT = "{PUBSUB_SERVICE_AGENT}"
WORK_SUBSCRIPTION = "{WORK_SUBSCRIPTION}"


def _pubsub_agent_lookup(cfg: DeployConfig) -> tuple[str, str]:
    number = shlex.join(
        ["gcloud", "projects", "describe", cfg.project, "--format=value(projectNumber)"]
    )
    return PUBSUB_AGENT, f"echo service-$({number})@gcp-sa-pubsub.iam.gserviceaccount.com"


def _work_subscription_lookup(cfg: DeployConfig) -> tuple[str, str]:
    """The subscription Eventarc created for the worker's ``--trigger-topic``."""
    trigger = shlex.join(
        [
            "gcloud", "functions", "describe", cfg.function_name("fanout_worker"), "--gen2",
            f"--project={cfg.project}", f"--region={cfg.region}",
            "--format=value(eventTrigger.trigger)",
        ]
    )  # fmt: skip
    describe = shlex.join(
        [
            "gcloud", "eventarc", "triggers", "describe", f"--project={cfg.project}",
            f"--location={cfg.region}", "--format=value(transport.pubsub.subscription)",
        ]
    )  # fmt: skip
    return WORK_SUBSCRIPTION, f'{describe} "$({trigger})"'


def fanout_setup_commands(cfg: DeployConfig) -> list[Command]:
    """The work topic, its dead-letter topic and who may publish to each."""
    p = f"--project={cfg.project}"
    agent = _pubsub_agent_lookup(cfg)
    return [
        _cmd("gcloud", "pubsub", "topics", "create", cfg.work_topic, p, why="fan-out work items"),
        _cmd(
            "gcloud", "pubsub", "topics", "create", cfg.dead_topic, p,
            why="work items that failed every delivery",
        ),
        _cmd(
            "gcloud", "pubsub", "topics", "add-iam-policy-binding", cfg.work_topic, p,
            f"--member=serviceAccount:{cfg.runtime_sa}", "--role=roles/pubsub.publisher",
            why="the planner (sync, schedule, upload functions) publishes work items",
        ),
        Command(
            (
                "gcloud", "pubsub", "topics", "add-iam-policy-binding", cfg.dead_topic, p,
                f"--member=serviceAccount:{PUBSUB_AGENT}", "--role=roles/pubsub.publisher",
            ),
            "Pub/Sub's service agent forwards dead letters",
            (agent,),
        ),
    ]  # fmt: skip


def fanout_deploy_commands(
    cfg: DeployConfig, common: tuple[str, ...], event: tuple[str, ...]
) -> list[Command]:
    """The two worker functions, their invokers, and the dead-letter policy."""
    p = f"--project={cfg.project}"
    capped = tuple(w for w in common if not w.startswith("--max-instances="))
    capped += (f"--max-instances={cfg.fanout_max_instances}",)
    worker_event = tuple(w for w in event if not w.startswith("--timeout="))
    worker_event += (f"--timeout={cfg.fanout_timeout_s}s",)
    subscription = _work_subscription_lookup(cfg)
    agent = f"--member=serviceAccount:{PUBSUB_AGENT}"
    commands = [
        _cmd(
            "gcloud",
            "functions",
            "deploy",
            cfg.function_name("fanout_worker"),
            *capped,
            "--entry-point=fanout_worker",
            f"--trigger-topic={cfg.work_topic}",
            *worker_event,
            why="one work item per message; --max-instances bounds Drive requests (quota)",
        ),
        _cmd(
            "gcloud",
            "functions",
            "deploy",
            cfg.function_name("fanout_dead_letter"),
            *common,
            "--entry-point=fanout_dead_letter",
            f"--trigger-topic={cfg.dead_topic}",
            *event,
            why="records dead-lettered items as failed in their run's manifest",
        ),
    ]
    commands += _invoker_bindings(cfg, "fanout_worker", "fanout_dead_letter")
    commands += [
        Command(
            (
                "gcloud", "pubsub", "subscriptions", "update", WORK_SUBSCRIPTION, p,
                f"--dead-letter-topic={cfg.dead_topic}",
                f"--max-delivery-attempts={cfg.fanout_max_delivery_attempts}",
            ),
            "dead-letter a work item after N deliveries (the Eventarc-created subscription)",
            (subscription,),
        ),
        Command(
            (
                "gcloud", "pubsub", "subscriptions", "add-iam-policy-binding", WORK_SUBSCRIPTION,
                p, agent, "--role=roles/pubsub.subscriber",
            ),
            "Pub/Sub's service agent acknowledges what it dead-letters",
            (subscription, _pubsub_agent_lookup(cfg)),
        ),
    ]  # fmt: skip
    return commands


def render(commands: Iterable[Command]) -> str:
    """A reviewable shell script: one commented command per paragraph."""
    out = ["#!/usr/bin/env bash", "set -euo pipefail", ""]
    for command in commands:
        if command.why:
            out.append(f"# {command.why}")
        out.append(command.script())
        out.append("")
    return "\n".join(out)


def vendor_shared(source_dir: Path = SOURCE_DIR, shared_dir: Path = SHARED_DIR) -> Path:
    """Copy the core into ``source_dir/shared`` (replacing any older copy); return it."""
    return vendor.vendor_shared(source_dir, shared_dir)


def stage_source(dest: Path, source_dir: Path = SOURCE_DIR, shared_dir: Path = SHARED_DIR) -> Path:
    """A complete deployable source tree in ``dest``: the function files plus ``shared/``."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in SOURCE_FILES:
        if (source_dir / name).exists():
            shutil.copy2(source_dir / name, dest / name)
    for required in ("main.py", "requirements.txt"):
        if not (dest / required).exists():
            raise FileNotFoundError(f"{source_dir / required} is missing")
    vendor_shared(dest, shared_dir)
    return dest


def requirement_problems(function_reqs: Path = SOURCE_DIR / "requirements.txt") -> list[str]:
    """What is wrong with the function's hash-pinned lock (see :mod:`deploy.locks`)."""
    return locks.gcp_problems(function_reqs)


def run_commands(commands: Sequence[Command]) -> int:
    """Run the commands in order (echoing each), stopping at the first failure."""
    agent: str | None = None
    for command in commands:
        if any(GCS_AGENT in w for w in command.argv) and agent is None:
            agent = subprocess.run(
                ["gcloud", "storage", "service-agent", f"--project={command.project()}"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
        argv_words = command.argv
        if command.probe:
            exists = subprocess.run(list(command.probe), check=False, capture_output=True)
            if exists.returncode == 0 and not command.update:
                print(f"= exists, kept: {shlex.join(command.probe[1:4])}", flush=True)
                continue
            if exists.returncode == 0:
                argv_words = command.update
                command = replace(command, argv=command.update)
        print(f"+ {command.shell(agent)}", flush=True)
        argv = [w.replace(GCS_AGENT, agent or GCS_AGENT) for w in argv_words]
        for placeholder, snippet in command.lookups:
            value = subprocess.run(
                ["bash", "-c", snippet], check=True, capture_output=True, text=True
            ).stdout.strip()
            argv = [w.replace(placeholder, value) for w in argv]
        result = subprocess.run(argv, check=False)
        if result.returncode != 0:
            print(f"failed ({result.returncode}): {command.why or argv[2]}", file=sys.stderr)
            return result.returncode
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.package_gcp",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--project", default="my-project")
    parser.add_argument("--region", default="europe-west1")
    parser.add_argument(
        "--input-bucket",
        "--bucket",
        dest="input_bucket",
        help="uploads here trigger on_upload (default PROJECT-drivepipe-in)",
    )
    parser.add_argument("--output-bucket", help="default PROJECT-drivepipe-out")
    parser.add_argument("--runtime", default="python311", choices=RUNTIMES)
    parser.add_argument("--secret", default="drive-sa")
    parser.add_argument("--secret-file", default="drive-sa.json")
    parser.add_argument("--drive-folder-id")
    parser.add_argument("--schedule", default="0 * * * *", help="cron, e.g. '0 * * * *'")
    parser.add_argument(
        "--pipelines",
        nargs="*",
        default=[],
        help="pipelines the scheduler names (none = all with scheduled = true)",
    )
    parser.add_argument(
        "--fanout",
        action="store_true",
        help="also create the work topics and deploy fanout_worker / fanout_dead_letter",
    )
    parser.add_argument("--fanout-max-instances", type=int, default=5)
    parser.add_argument(
        "--push",
        action="store_true",
        help="Drive push notifications: the push topic, drive_notifications (public) and "
        "push_worker (docs/push.md)",
    )
    parser.add_argument(
        "--bigquery-dataset", help="grant the functions table rights in this dataset (catalogs)"
    )
    stage = parser.add_mutually_exclusive_group()
    stage.add_argument("--setup-only", action="store_true", help="only APIs, buckets, IAM")
    stage.add_argument("--deploy-only", action="store_true", help="only deploy + scheduler")
    stage.add_argument("--teardown", action="store_true", help="delete everything instead")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--print", action="store_true", help="print the commands (default)")
    mode.add_argument("--run", action="store_true", help="vendor shared/ and run the commands")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point (see module docstring)."""
    args = _parser().parse_args(argv)
    try:
        cfg = DeployConfig(
            project=args.project,
            region=args.region,
            input_bucket=args.input_bucket or f"{args.project}-drivepipe-in",
            output_bucket=args.output_bucket or f"{args.project}-drivepipe-out",
            runtime=args.runtime,
            secret=args.secret,
            secret_file=args.secret_file,
            drive_folder_id=args.drive_folder_id,
            schedule=args.schedule,
            scheduled_pipelines=tuple(args.pipelines),
            fanout=args.fanout,
            fanout_max_instances=args.fanout_max_instances,
            push=args.push,
            bigquery_dataset=args.bigquery_dataset,
            source=Path(os.path.relpath(STAGED_SOURCE, REPO_ROOT)),
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.teardown:
        commands = teardown_commands(cfg)
    elif args.setup_only:
        commands = setup_commands(cfg)
    elif args.deploy_only:
        commands = deploy_commands(cfg)
    else:
        commands = setup_commands(cfg) + deploy_commands(cfg)
    if not args.run:
        print(render(commands))
        return 0
    if any(c.argv[:3] == ("gcloud", "functions", "deploy") for c in commands):
        problems = requirement_problems()
        if problems:
            print(
                "gcp_functions/requirements.txt is out of date:\n  " + "\n  ".join(problems),
                file=sys.stderr,
            )
            return 1
    os.chdir(REPO_ROOT)  # the staging steps copy from the working tree
    return run_commands(commands)


if __name__ == "__main__":
    raise SystemExit(main())
