"""Logging: JSON lines in the cloud (with a Cloud Logging ``severity``), plain text locally.

Secrets never reach a log line: values of the secret environment variables are masked, and
``key=`` / ``access_token=`` query parameters and bearer tokens are redacted.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from datetime import UTC, datetime
from typing import Any

from shared.errors import ConfigError

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_LEVEL_ENV = "DRIVEPIPE_LOG_LEVEL"
SECRET_ENV_VARS = (
    "DRIVE_API_KEY",
    "DRIVE_ACCESS_TOKEN",
    "DRIVE_SERVICE_ACCOUNT_JSON",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
)
_SECRET_PATTERNS = (
    re.compile(r"(?i)([?&](?:key|access_token|token)=)[^&\s\"']+"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"(?i)(\"private_key\"\s*:\s*\")[^\"]+"),
)
_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def redact(text: str) -> str:
    """Mask secret values and credential-looking parameters in ``text``."""
    for name in SECRET_ENV_VARS:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(r"\1***", text)
    return text


def in_cloud() -> bool:
    """True inside AWS Lambda or Cloud Functions / Cloud Run."""
    return bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME") or os.environ.get("K_SERVICE"))


class JsonFormatter(logging.Formatter):
    """One JSON object per line; ``severity`` is what Cloud Logging reads."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "severity": record.levelname if record.levelname != "WARN" else "WARNING",
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _RESERVED})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(entry, default=str, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    """``LEVEL logger: message key=value ...`` for terminals."""

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(f"{k}={v}" for k, v in vars(record).items() if k not in _RESERVED)
        line = f"{record.levelname:<7} {record.name}: {record.getMessage()}"
        if extras:
            line += f"  {extras}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return redact(line)


def _level_name(level: str | None) -> str:
    """``level`` (else ``$DRIVEPIPE_LOG_LEVEL``, else INFO), upper-cased and checked."""
    name = (level or os.environ.get(LOG_LEVEL_ENV) or "INFO").strip().upper()
    if name not in LOG_LEVELS:
        origin = "the log level" if level else LOG_LEVEL_ENV
        raise ConfigError(f"{origin} {name!r} is not one of {', '.join(LOG_LEVELS)}")
    return name


def configure(level: str | None = None, *, json_lines: bool | None = None) -> None:
    """Set up the ``drivepipe`` logger once; JSON by default in the cloud.

    Raises ``ConfigError`` naming the setting when the level is not a log level.
    """
    name = _level_name(level)
    use_json = in_cloud() or os.environ.get("DRIVEPIPE_LOG_FORMAT") == "json"
    if json_lines is not None:
        use_json = json_lines
    logger = logging.getLogger("drivepipe")
    handler = logging.StreamHandler(sys.stderr if not in_cloud() else sys.stdout)
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    logger.handlers[:] = [handler]
    logger.setLevel(name)
    logger.propagate = False


def get_logger(name: str) -> logging.Logger:
    """A child of the ``drivepipe`` logger."""
    return logging.getLogger(f"drivepipe.{name}")
