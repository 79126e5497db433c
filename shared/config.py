"""Pipeline configuration: one TOML file, validated once when it is loaded.

Every error names the file, the field's dotted path and what is wrong with it, e.g.
``drivepipe.toml: pipelines.sales.steps[1].columns: Field required``.
"""

from __future__ import annotations

import functools
import os
import re
import sys
import tomllib
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared.errors import ConfigError
from shared.run.fanout.options import FanoutOptions
from shared.run.notify.options import NotifyOptions
from shared.storage.catalog.options import CatalogOptions
from shared.transform.readers.options import ReadOptions
from shared.transform.steps.specs import Step
from shared.transform.streaming.options import StreamingOptions
from shared.transform.tables.options import SchemaOptions
from shared.triggers.http import OVERRIDE_FIELDS

CONFIG_ENV = "DRIVEPIPE_CONFIG"
SourceFormat = Literal["csv", "tsv", "xlsx", "json", "jsonl", "parquet", "gsheet"]
if TYPE_CHECKING:
    Override = str
else:  # the fields of a sync body (shared.triggers.http.SyncBody) but its pipeline name
    Override = Literal[OVERRIDE_FIELDS]
OVERRIDABLE: tuple[Override, ...] = OVERRIDE_FIELDS
# What a remote caller (POST /sync, a request file) may change without being listed: nothing.
# The pipeline's owner lists what callers may set; `drivepipe sync`, run by whoever holds this
# file and the credentials, takes every override (see shared.cli). A folder_id other than the
# pipeline's runs isolated, with its own state and outputs (shared.run.scope).
DEFAULT_OVERRIDES: tuple[Override, ...] = ()
SOURCE_FORMATS: tuple[SourceFormat, ...] = (
    "csv",
    "tsv",
    "xlsx",
    "json",
    "jsonl",
    "parquet",
    "gsheet",
)
# Mirrors shared.transform.writers (which imports pandas, so config can't); a test keeps them equal.
COMPRESSIONS: dict[str, tuple[str, ...]] = {
    "parquet": ("zstd", "snappy", "gzip", "brotli", "lz4", "none"),
    "csv": ("gzip", "none"),
    "jsonl": ("gzip", "none"),
}
_URL_SCHEMES = ("s3://", "gs://", "file://")
# "s3:/bucket" or "gs:bucket" would otherwise be taken for a local directory of that name.
_MISTYPED_SCHEME = re.compile(r"^(?:s3|gs|file):(?!//)", re.IGNORECASE)
_NAME = r"^[A-Za-z0-9_.-]{1,128}$"
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_url(value: str) -> str:
    if not value:
        raise ValueError("must not be empty")
    if ("://" in value and not value.startswith(_URL_SCHEMES)) or _MISTYPED_SCHEME.match(value):
        raise ValueError(
            f"{value!r} must be s3://bucket/prefix, gs://bucket/prefix, or a local path"
        )
    if value.startswith(("s3://", "gs://")) and not value.split("://", 1)[1].split("/", 1)[0]:
        raise ValueError("is missing the bucket name")
    return value


class Source(_Model):
    """Where a pipeline's inputs come from."""

    folder_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]+$")
    drive_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]+$")
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    formats: tuple[SourceFormat, ...] = SOURCE_FORMATS
    modified_since: datetime | None = None
    incoming_url: str | None = None  # upload-triggered runs: objects under this prefix
    # Read the Drive changes feed first and skip the walk when nothing changed under the folder.
    changes_feed: bool = False
    reconcile_every_hours: float | None = Field(default=168.0, gt=0)  # walk at least this often
    # Folder ids that, named by a folder_id override, sync into this pipeline's own state and
    # outputs (a copy of the folder, one being migrated). Any other folder runs isolated.
    alias_folder_ids: tuple[str, ...] = ()

    @field_validator("alias_folder_ids")
    @classmethod
    def _folder_ids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for folder in value:
            if not re.match(r"^[A-Za-z0-9_-]{1,256}$", folder):
                raise ValueError(f"{folder!r} is not a Drive folder id")
        return value

    @field_validator("incoming_url")
    @classmethod
    def _incoming(cls, value: str | None) -> str | None:
        if value is None:
            return None
        _check_url(value)
        return value if value.endswith("/") else value + "/"


class Output(_Model):
    """Where and how a pipeline writes."""

    url: str
    format: Literal["parquet", "csv", "jsonl"] = "parquet"
    compression: str | None = None
    partition_by: tuple[str, ...] = ()
    keep_raw: bool = False
    # "table": <table>/<partitions>/<flat name>, one schema per table (docs/tables.md);
    # "files": <partitions>/<Drive path>, each file as it comes, no schema (before 0.x).
    layout: Literal["table", "files"] = "table"

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _check_url(value)

    @model_validator(mode="after")
    def _compression_fits_format(self) -> Output:
        allowed = {None, *COMPRESSIONS[self.format]}
        if self.compression not in allowed:
            choices = ", ".join(sorted(c for c in allowed if c))
            raise ValueError(
                f"compression {self.compression!r} is not valid for "
                f"{self.format}; choose one of {choices}"
            )
        return self


class MirrorOptions(_Model):
    """What a sync does with inputs gone from Drive, and the guard on mass removals."""

    on_removed: Literal["delete", "keep"] = "delete"  # keep: outputs stay, `removed_kept`
    # Delete nothing when more inputs than this are gone in one run (rclone's --max-delete)...
    max_removed: int | None = Field(default=50, ge=0)
    # ...or more than this fraction of the inputs the state knew (force_removals goes past).
    max_removed_fraction: float | None = Field(default=0.5, ge=0.0, le=1.0)


class Pipeline(_Model):
    """One named pipeline: source → read → steps → output."""

    name: str = Field(pattern=_NAME)
    description: str = ""
    scheduled: bool = False
    allow_overrides: tuple[Override, ...] = DEFAULT_OVERRIDES
    source: Source = Source()
    read: ReadOptions = ReadOptions()
    steps: tuple[Step, ...] = ()
    output: Output
    # Drive requests in flight, listing and downloads together (shared.run.prefetch); the
    # default is shared.drive.client.DEFAULT_CONCURRENCY (docs/performance.md: why 16).
    concurrency: int = Field(default=16, ge=1, le=64)
    fanout: FanoutOptions | None = None  # spread big syncs over queue workers
    streaming: StreamingOptions = StreamingOptions()
    mirror: MirrorOptions = MirrorOptions()  # removals, and the guard on them
    notify: NotifyOptions | None = None  # who hears about a run; None: [settings.notify]
    # Drive push notifications (changes.watch) start a sync within seconds of an edit; the
    # schedule still reconciles and renews the channel (docs/push.md).
    push: bool = False

    # The table's declared columns, contract and lineage ("schema" in the file: the name
    # pydantic keeps for itself); where it is registered (Glue, BigQuery).
    schema_: SchemaOptions = Field(default=SchemaOptions(), alias="schema")
    catalog: CatalogOptions = CatalogOptions()

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _push_reads_the_feed(self) -> Pipeline:
        if self.push and not self.source.changes_feed:
            raise ValueError(
                "push = true needs source.changes_feed = true: a notification only says that "
                "something changed, the changes feed says what"
            )
        if self.push and not self.scheduled:
            raise ValueError(
                "push = true needs scheduled = true: the schedule renews the channel before "
                "Drive expires it (one week at most) and reconciles what a lost notification "
                "missed"
            )
        return self

    @model_validator(mode="after")
    def _tables_fit(self) -> Pipeline:
        from shared.transform.tables.checks import table_problems

        problems = table_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self


_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_CRON = re.compile(r"^cron\((.+)\)$")


def check_schedule_expression(value: str) -> str:
    """``value`` if EventBridge accepts it as a schedule, else ``ValueError`` saying why.

    ``rate(N unit)``: N a positive integer, the unit singular for 1 (``rate(1 hour)``) and
    plural otherwise (``rate(5 minutes)``). ``cron(...)``: six fields (minutes hours
    day-of-month month day-of-week year), one of the two day fields ``?``. Checked here so a
    typo fails when the file is loaded, not at ``chalice deploy``.
    """
    rate = _RATE.match(value)
    if rate:
        count, unit = int(rate.group(1)), rate.group(2)
        if count < 1:
            raise ValueError(f"{value!r}: the rate must be at least 1")
        if (count == 1) != (not unit.endswith("s")):
            right = unit.rstrip("s") if count == 1 else unit + "s"
            raise ValueError(f"{value!r}: write rate({count} {right})")
        return value
    cron = _CRON.match(value)
    if cron:
        fields = cron.group(1).split()
        if len(fields) != 6:
            raise ValueError(
                f"{value!r}: cron needs 6 fields (minutes hours day-of-month month "
                f"day-of-week year), not {len(fields)}"
            )
        if "?" not in (fields[2], fields[4]):
            raise ValueError(f"{value!r}: day-of-month or day-of-week must be '?'")
        return value
    raise ValueError(
        f"{value!r} is not a schedule expression: use rate(1 hour), rate(15 minutes) or "
        "cron(0 6 * * ? *)"
    )


_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
# Never allowed for custom steps, even when listed: drivepipe itself (its storage writes
# anywhere) and third-party packages that run programs, touch files or unpickle. The standard
# library (sys.stdlib_module_names) is refused as a whole.
NEVER_CUSTOM_MODULES = frozenset(
    {
        "shared", "devstack", "bench", "chalicelib", "pandas", "numpy", "pyarrow", "openpyxl",
        "boto3", "botocore", "s3transfer", "google", "requests", "urllib3", "pydantic", "sh",
        "plumbum", "pexpect", "invoke", "fabric", "paramiko", "psutil", "dill", "cloudpickle",
        "joblib", "fsspec", "setuptools", "pip", "_pytest", "pytest",
    }
)  # fmt: skip


def custom_module(function: str) -> str:
    """The module part of a custom step's ``"pkg.mod:callable"`` or ``"pkg.mod.callable"``."""
    if ":" in function:
        return function.partition(":")[0]
    return function.rpartition(".")[0]


def module_refusal(module: str) -> str | None:
    """Why ``module`` may never provide custom steps, or ``None`` if it may."""
    top = module.split(".", 1)[0]
    if top in sys.stdlib_module_names:
        return f"{top!r} is in the standard library"
    if top in NEVER_CUSTOM_MODULES:
        return f"{top!r} is a library that can run programs or touch files"
    return None


class Settings(_Model):
    """File-wide settings shared by every pipeline."""

    requests_url: str | None = None  # JSON request files here start a Drive sync
    schedule: str | None = None  # e.g. "rate(1 hour)" or "cron(0 * * * ? *)" for AWS
    # Module prefixes ``custom`` steps may import from, e.g. ["my_pkg", "team.steps"]; empty
    # (the default) allows no custom step at all.
    custom_step_modules: tuple[str, ...] = ()
    notify: NotifyOptions | None = None  # for every pipeline without its own notify table

    @field_validator("custom_step_modules")
    @classmethod
    def _custom_modules(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for module in value:
            if not _MODULE_NAME.match(module):
                raise ValueError(f"{module!r} is not a module name like 'my_pkg.steps'")
            reason = module_refusal(module)
            if reason:
                raise ValueError(f"{module!r} cannot provide custom steps: {reason}")
        return value

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        return None if value is None else check_schedule_expression(value)

    @field_validator("requests_url")
    @classmethod
    def _requests(cls, value: str | None) -> str | None:
        if value is None:
            return None
        _check_url(value)
        return value if value.endswith("/") else value + "/"


class PipelineFile(_Model):
    """The whole configuration file."""

    settings: Settings = Settings()
    pipelines: dict[str, Pipeline] = Field(min_length=1)

    def get(self, name: str) -> Pipeline | None:
        """The pipeline called ``name``, or ``None``."""
        return self.pipelines.get(name)

    def poison_attempt_problems(self) -> list[str]:
        """``field: reason`` for each fanned-out pipeline whose queue would dead-letter a work
        item before poison detection (``DRIVEPIPE_POISON_ATTEMPTS``) could quarantine the input
        that kills its worker: that takes one delivery more than the limit."""
        from shared.settings import runtime_settings

        limit = runtime_settings().poison_attempts
        return [
            f"pipelines.{name}.fanout.max_attempts: {p.fanout.max_attempts} must be above "
            f"DRIVEPIPE_POISON_ATTEMPTS ({limit}), or an item whose input kills the worker is "
            f"dead-lettered before delivery {limit + 1} quarantines that input; raise it (and "
            "the queue's maxReceiveCount or --max-delivery-attempts) or lower the variable"
            for name, p in self.pipelines.items()
            if p.fanout is not None and p.fanout.max_attempts <= limit
        ]

    def custom_step_problems(self) -> list[str]:
        """``field: reason`` for each custom step whose module is not allowed."""
        allowed = self.settings.custom_step_modules
        problems = []
        for name, pipeline in self.pipelines.items():
            for index, step in enumerate(pipeline.steps):
                function = getattr(step, "function", None)
                if step.op != "custom" or not isinstance(function, str):
                    continue
                module = custom_module(function)
                reason = module_refusal(module)
                if reason is None and not any(
                    module == prefix or module.startswith(prefix + ".") for prefix in allowed
                ):
                    listed = ", ".join(allowed) if allowed else "nothing"
                    reason = (
                        f"module {module!r} is not under settings.custom_step_modules "
                        f"(which allows {listed})"
                    )
                if reason:
                    problems.append(
                        f"pipelines.{name}.steps[{index}].custom.function: {function!r} "
                        f"is not allowed: {reason}"
                    )
        return problems


def _interpolate(value: Any, path: str) -> Any:
    """Expand ``${VAR}`` and ``${VAR:-default}`` in every string value."""
    if isinstance(value, str):

        def expand(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            raise ConfigError(f"{path}: environment variable {name} is not set")

        return _ENV_REF.sub(expand, value)
    if isinstance(value, dict):
        return {k: _interpolate(v, f"{path}.{k}" if path else k) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def _format_location(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after", "function-before") or "[" in str(part):
            continue  # pydantic's internal union/validator tags say nothing to a user
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def parse_config(data: dict[str, Any], *, source: str = "<config>") -> PipelineFile:
    """Validate an already-parsed mapping; raise :class:`ConfigError` naming the field."""
    expanded = _interpolate(data, "")
    pipelines = expanded.get("pipelines")
    if isinstance(pipelines, dict):
        expanded["pipelines"] = {
            name: {"name": name, **body} if isinstance(body, dict) else body
            for name, body in pipelines.items()
        }
    try:
        parsed = PipelineFile.model_validate(expanded)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = list(err["loc"])
            # discriminated unions add the tag ("steps", 1, "cast", "columns"): keep it readable
            message = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
            message = message.removeprefix("Value error, ")  # pydantic's wrapper of our ValueErrors
            problems.append(f"{_format_location(tuple(loc))}: {message}")
        raise ConfigError(f"{source}: " + "; ".join(problems)) from None
    problems = parsed.custom_step_problems() + parsed.poison_attempt_problems()
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))
    return _inherit_notify(parsed)


def _inherit_notify(parsed: PipelineFile) -> PipelineFile:
    """Give ``[settings.notify]`` to every pipeline that has no ``notify`` table of its own."""
    default = parsed.settings.notify
    if default is None:
        return parsed
    pipelines = {
        name: p if p.notify is not None else p.model_copy(update={"notify": default})
        for name, p in parsed.pipelines.items()
    }
    return parsed.model_copy(update={"pipelines": pipelines})


def load_config(path: str | os.PathLike[str]) -> PipelineFile:
    """Read and validate a TOML pipeline file."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {file.absolute()}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: invalid TOML: {exc}") from None
    return parse_config(data, source=str(file))


@functools.cache
def load_config_from_env(
    base_dir: str | os.PathLike[str] | None = None, default: str | None = None
) -> PipelineFile:
    """The deployed configuration (``$DRIVEPIPE_CONFIG``, else ``default``), loaded once.

    A relative path is relative to ``base_dir`` when given (a handler's own directory), else
    to the working directory. The environment is only read, never changed.
    """
    named = os.environ.get(CONFIG_ENV)
    path = named or default
    if not path:
        raise ConfigError(f"{CONFIG_ENV} is not set; point it at the pipeline TOML file")
    file = Path(base_dir or "") / path
    if not file.is_file():
        origin = CONFIG_ENV if named else f"the default, as {CONFIG_ENV} is not set"
        raise ConfigError(f"config file not found: {file.absolute()} (from {origin})")
    return load_config(file)


def adhoc_pipeline(
    *,
    output_url: str,
    folder_id: str | None = None,
    output_format: str = "parquet",
    include: tuple[str, ...] = (),
    exclude: tuple[str, ...] = (),
    name: str = "adhoc",
) -> Pipeline:
    """A pipeline built from CLI flags: convert each file to ``output_format``, unchanged.

    It keeps the folder's shape (``output.layout = "files"``): a folder converted ad hoc holds
    files of any shape, not one table; a configured pipeline makes one.
    """
    return parse_config(
        {
            "pipelines": {
                name: {
                    "source": {
                        "folder_id": folder_id,
                        "include": list(include),
                        "exclude": list(exclude),
                    },
                    "output": {"url": output_url, "format": output_format, "layout": "files"},
                }
            }
        },
        source="command line",
    ).pipelines[name]
