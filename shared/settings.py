"""Runtime settings that come from the environment rather than the pipelines file.

One validated model, read once per distinct environment (pandas-free, cheap at cold start):

=================================  =================  =========================================
Variable                           Default            Meaning
=================================  =================  =========================================
``DRIVEPIPE_CHECKPOINT_EVERY``     unset: time only   an inline sync saves its state after this
                                                      many processed inputs ...
``DRIVEPIPE_CHECKPOINT_SECONDS``   10                 ... and at least this often (seconds)
``DRIVEPIPE_LEASE_SECONDS``        900                an inline sync's lease TTL, renewed at a
                                                      third of it while the sync runs
``DRIVEPIPE_EVENT_CLAIM_SECONDS``  900                how long a crashed delivery's claim
                                                      blocks its storage event
``DRIVEPIPE_EVENT_WAIT_SECONDS``   10                 how long a delivery waits for another's
                                                      claim before asking for redelivery
``DRIVEPIPE_POISON_ATTEMPTS``      3                  an input on which this many invocations
                                                      in a row died is quarantined unprocessed
``DRIVEPIPE_RESERVE_SECONDS``      30                 of the function's time, what is kept to
                                                      finish a run (at most a quarter of it)
``DRIVEPIPE_TIMEOUT_SECONDS``      unset              Cloud Functions: the ``--timeout`` the
                                                      function was deployed with (gen2 has no
                                                      remaining-time API; deploy sets it)
``DRIVEPIPE_PUSH_ADDRESS``         unset              the public HTTPS URL of
                                                      ``POST /drive/notifications`` that Drive
                                                      channels deliver to (``push = true``)
``DRIVEPIPE_CHANNEL_SECRETS``      unset              where each channel's token is kept:
                                                      ``aws-sm:PREFIX`` (Secrets Manager),
                                                      ``gcp-sm:projects/P`` (Secret Manager),
                                                      ``dir:PATH`` (local development)
``DRIVEPIPE_PUSH_QUEUE``           unset              AWS: the SQS queue a notification hands
                                                      its sync to (``push_worker``)
``DRIVEPIPE_PUSH_TOPIC``           unset              GCP: the Pub/Sub topic for the same
``DRIVEPIPE_CHANNEL_HOURS``        168                a channel's requested lifetime (Drive's
                                                      maximum for changes channels: 168)
``DRIVEPIPE_CHANNEL_RENEW_HOURS``  48                 the schedule renews a channel with less
                                                      than this left
``DRIVEPIPE_PUSH_SILENT_MINUTES``  30                 a reconcile that finds changes no
                                                      notification announced for this long
                                                      reopens the channel
``DRIVEPIPE_PUSH_SETTLE_SECONDS``  1                  a push worker waits until notifications
                                                      have been quiet this long (at most 10 s)
                                                      before it syncs; 0 does not wait
``DRIVEPIPE_PREFETCH_MB``          128                MB of downloads a sync (or work item) may
                                                      hold in scratch ahead of processing, while
                                                      it lists too (0: none before the listing
                                                      ends, and 2 x concurrency files after)
=================================  =================  =========================================

An empty variable means its default; any other value must be a positive number (a positive
integer for ``DRIVEPIPE_CHECKPOINT_EVERY`` and ``DRIVEPIPE_POISON_ATTEMPTS``; zero too for
``DRIVEPIPE_PREFETCH_MB``; text for the push address, secret store, queue and topic), else
:class:`~shared.errors.ConfigError` names it.
Drive, storage, queue and logging variables are read by their own modules, and
``DRIVEPIPE_CRASH_AT`` (fault-injection tests only: SIGKILL at a named point) by
:mod:`shared.crashpoints`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    field_validator,
)

from shared.errors import ConfigError


class RuntimeSettings(BaseModel):
    """The ``DRIVEPIPE_*`` runtime settings; field aliases are the variable names."""

    model_config = ConfigDict(
        frozen=True, extra="ignore", populate_by_name=True, allow_inf_nan=False
    )

    checkpoint_every: PositiveInt | None = Field(None, alias="DRIVEPIPE_CHECKPOINT_EVERY")
    checkpoint_seconds: PositiveFloat = Field(10.0, alias="DRIVEPIPE_CHECKPOINT_SECONDS")
    lease_seconds: PositiveFloat = Field(900.0, alias="DRIVEPIPE_LEASE_SECONDS")
    event_claim_seconds: PositiveFloat = Field(900.0, alias="DRIVEPIPE_EVENT_CLAIM_SECONDS")
    event_wait_seconds: PositiveFloat = Field(10.0, alias="DRIVEPIPE_EVENT_WAIT_SECONDS")
    poison_attempts: PositiveInt = Field(3, alias="DRIVEPIPE_POISON_ATTEMPTS")
    reserve_seconds: PositiveFloat = Field(30.0, alias="DRIVEPIPE_RESERVE_SECONDS")
    timeout_seconds: PositiveFloat | None = Field(None, alias="DRIVEPIPE_TIMEOUT_SECONDS")
    # Drive push notifications (shared.run.channels, shared.triggers.push)
    push_address: str | None = Field(None, alias="DRIVEPIPE_PUSH_ADDRESS")
    channel_secrets: str | None = Field(None, alias="DRIVEPIPE_CHANNEL_SECRETS")
    push_queue: str | None = Field(None, alias="DRIVEPIPE_PUSH_QUEUE")
    push_topic: str | None = Field(None, alias="DRIVEPIPE_PUSH_TOPIC")
    channel_hours: PositiveFloat = Field(168.0, le=168.0, alias="DRIVEPIPE_CHANNEL_HOURS")
    channel_renew_hours: PositiveFloat = Field(48.0, alias="DRIVEPIPE_CHANNEL_RENEW_HOURS")
    push_silent_minutes: PositiveFloat = Field(30.0, alias="DRIVEPIPE_PUSH_SILENT_MINUTES")
    push_settle_seconds: float = Field(1.0, ge=0.0, le=60.0, alias="DRIVEPIPE_PUSH_SETTLE_SECONDS")
    prefetch_mb: float = Field(128.0, ge=0, alias="DRIVEPIPE_PREFETCH_MB")

    @field_validator("push_address")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        """Drive delivers to HTTPS only; plain http is allowed for a loopback dev webhook."""
        if value is None:
            return None
        loopback = ("http://127.0.0.1:", "http://localhost:", "http://127.0.0.1/")
        if not value.startswith("https://") and not value.startswith(loopback):
            raise ValueError("must be an https:// URL (Drive delivers to HTTPS addresses only)")
        return value

    @field_validator("channel_secrets")
    @classmethod
    def _secret_store(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("aws-sm:", "gcp-sm:projects/", "dir:")):
            raise ValueError("must be aws-sm:PREFIX, gcp-sm:projects/PROJECT or dir:PATH")
        return value


VARIABLES: tuple[str, ...] = tuple(
    str(field.alias) for field in RuntimeSettings.model_fields.values()
)


def runtime_settings(env: Mapping[str, str] | None = None) -> RuntimeSettings:
    """The settings of ``env`` (default ``os.environ``), validated once per distinct value set."""
    source = os.environ if env is None else env
    return _load(tuple((name, source.get(name, "").strip()) for name in VARIABLES))


@lru_cache(maxsize=8)
def _load(values: tuple[tuple[str, str], ...]) -> RuntimeSettings:
    try:
        return RuntimeSettings.model_validate({name: raw for name, raw in values if raw})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}={err.get('input')!r}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid runtime setting: {problems}") from None
