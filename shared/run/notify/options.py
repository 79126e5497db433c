"""What a pipeline's ``notify`` table (or ``[settings.notify]``) may say, validated at load.

::

    [settings.notify]                     # every pipeline, unless it has its own table
    on = ["failed", "quarantined", "removal_blocked"]   # the default; or ["always"]
    sns_topic = "arn:aws:sns:eu-west-1:123456789012:drivepipe-alerts"
    pubsub_topic = "projects/my-project/topics/drivepipe-alerts"
    webhook_url_env = "DRIVEPIPE_WEBHOOK_URL"   # the URL is read from this variable...
    # webhook_secret = "arn:aws:secretsmanager:...:secret:drivepipe-webhook"  # ...or from here

An empty target value counts as unset, so ``sns_topic = "${DRIVEPIPE_NOTIFY_SNS_TOPIC:-}"``
leaves the choice to each stage's environment. The webhook URL is a credential (a Slack
incoming-webhook URL is its own token), so the file only says where to read it: an environment
variable (on GCP, ``--set-secrets`` fills one from Secret Manager) or an AWS Secrets Manager
secret / SSM ``SecureString`` parameter.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

When = Literal["failed", "quarantined", "removal_blocked", "always"]
DEFAULT_WHEN: tuple[When, ...] = ("failed", "quarantined", "removal_blocked")
_SNS_ARN = r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$"
_PUBSUB_TOPIC = r"^(projects/[a-z][a-z0-9.:-]{1,62}/topics/)?[A-Za-z][A-Za-z0-9._~+%-]{2,254}$"
TARGET_FIELDS = ("sns_topic", "pubsub_topic", "webhook_url_env", "webhook_secret")
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
_SECRET_REF = (
    r"^(arn:aws[a-z-]*:(secretsmanager|ssm):[a-z0-9-]+:\d{12}:(secret:|parameter/)\S+"
    r"|[A-Za-z0-9/_+=.@-]{1,512})$"
)


class NotifyOptions(BaseModel):
    """When to tell people about a run, and where."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    on: tuple[When, ...] = DEFAULT_WHEN  # [] turns notifications off
    sns_topic: str | None = Field(default=None, pattern=_SNS_ARN)
    pubsub_topic: str | None = Field(default=None, pattern=_PUBSUB_TOPIC)
    webhook_url_env: str | None = Field(default=None, pattern=_ENV_NAME)
    webhook_secret: str | None = Field(default=None, pattern=_SECRET_REF)
    webhook_format: Literal["slack", "json"] = "slack"  # json: the whole event as the body
    retries: int = Field(default=3, ge=0, le=8)  # per target, with exponential backoff

    @model_validator(mode="before")
    @classmethod
    def _named_targets(cls, data: Any) -> Any:
        """A table must name a target; an empty value (``"${VAR:-}"`` with VAR unset) is no
        target, so a shipped file can leave a target to the stage's environment."""
        if not isinstance(data, dict):
            return data
        if data.get("on", True) and not any(name in data for name in TARGET_FIELDS):
            raise ValueError(
                "names no target: set sns_topic, pubsub_topic, webhook_url_env or webhook_secret "
                "(or on = [] to turn notifications off)"
            )
        return {k: None if k in TARGET_FIELDS and v == "" else v for k, v in data.items()}

    @model_validator(mode="after")
    def _one_webhook(self) -> NotifyOptions:
        if self.webhook_url_env and self.webhook_secret:
            raise ValueError("give webhook_url_env or webhook_secret, not both")
        return self

    @property
    def targets(self) -> list[str]:
        """The configured targets: ``sns``, ``pubsub``, ``webhook``."""
        found = ["sns"] if self.sns_topic else []
        found += ["pubsub"] if self.pubsub_topic else []
        found += ["webhook"] if self.webhook_url_env or self.webhook_secret else []
        return found
