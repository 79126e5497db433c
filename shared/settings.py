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
=================================  =================  =========================================

An empty variable means its default; any other value must be a positive number (a positive
integer for ``DRIVEPIPE_CHECKPOINT_EVERY`` and ``DRIVEPIPE_POISON_ATTEMPTS``), else
:class:`~shared.errors.ConfigError` names it.
Drive, storage, queue and logging variables are read by their own modules, and
``DRIVEPIPE_CRASH_AT`` (fault-injection tests only: SIGKILL at a named point) by
:mod:`shared.crashpoints`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, ValidationError

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
