"""Logging: JSON lines in the cloud (with a Cloud Logging ``severity``), plain text locally.

Secrets never reach a log line: values of the secret environment variables are masked, and
``key=`` / ``access_token=`` / signature query parameters, bearer tokens, credential headers
(``Authorization``, ``X-Amz-Security-Token``, ``x-goog-api-key``) and credential fields
(``access_token``, ``SecretAccessKey``, ``SessionToken``, ...) are redacted. :func:`configure`
puts a :class:`RedactingFilter` on its own handler and on every root handler (such as the
Lambda runtime's), so a third-party DEBUG line is masked too.

Log lines can't be forged: text logs escape control characters (newlines, CR, ANSI escapes,
other C0/C1 controls, U+2028/U+2029) in the message and the extra fields, and indent a
traceback under ``  | ``; JSON logs escape them through ``json.dumps``.

Third-party loggers (botocore, boto3, urllib3, s3transfer, google.auth,
google.resumable_media, requests) stay at INFO, or at the root's level when that is higher,
even when the root logger is at DEBUG (``AWS_LAMBDA_LOG_LEVEL=DEBUG``), unless
``DRIVEPIPE_LOG_THIRD_PARTY`` names a level (e.g. ``debug``); then, where the root logger has
no handler (Cloud Functions), their lines go through drivepipe's handler.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from shared.errors import ConfigError

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_LEVEL_ENV = "DRIVEPIPE_LOG_LEVEL"
THIRD_PARTY_ENV = "DRIVEPIPE_LOG_THIRD_PARTY"
THIRD_PARTY_LOGGERS = (
    "botocore",
    "boto3",
    "urllib3",
    "s3transfer",
    "google.auth",
    "google.resumable_media",
    "google.cloud",
    "requests",
)
SECRET_ENV_VARS = (
    "DRIVE_API_KEY",
    "DRIVE_ACCESS_TOKEN",
    "DRIVE_SERVICE_ACCOUNT_JSON",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
)
# Names whose value is a credential, as a header, a JSON/dict field or a key=value pair.
_SECRET_NAMES = (
    "x-amz-security-token|x-goog-api-key|x-api-key|access_token|refresh_token|id_token"
    "|client_secret|api_key|apikey|password|aws_secret_access_key|secret_access_key"
    "|secretaccesskey|aws_session_token|session_token|sessiontoken|token"
)
_SECRET_PATTERNS = (
    re.compile(
        r"(?i)([?&](?:key|access_token|token|x-amz-security-token|x-amz-signature"
        r"|x-goog-signature|signature|sig)=)[^&\s\"'\\]+"
    ),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"(?i)(\"private_key\"\s*:\s*\")[^\"]+"),
    # Authorization values hold spaces and commas (AWS4-HMAC-SHA256 Credential=..., Signature=..)
    re.compile(
        r"(?i)(?<![\w-])((?:proxy-)?authorization\\?[\"']?\s*[:=]\s*b?\\?[\"']?)(?!\*\*\*)"
        r"[^\"'\r\n\\]+"
    ),
    re.compile(
        rf"(?i)(?<![\w-])((?:{_SECRET_NAMES})\\?[\"']?\s*[:=]\s*b?\\?[\"']?)(?!\*\*\*)"
        r"[^\"'\s,;&<>(){}\[\]\\]+"
    ),
    re.compile(r"(?i)(<(?:SecretAccessKey|SessionToken|Token)>)[^<]+"),
)
# Control characters that could end a text log line, fake a new one or drive a terminal.
_CONTROL = {code: f"\\x{code:02x}" for code in (*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0))} | {
    ord("\n"): "\\n",
    ord("\r"): "\\r",
    ord("\t"): "\\t",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}
# json.dumps escapes C0; these also end a line for str.splitlines() and some log viewers.
_JSON_LINE_BREAKS = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}
_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
# Fields of the invocation being handled (aws_request_id, execution_id): on every line.
_INVOCATION: contextvars.ContextVar[tuple[tuple[str, str], ...]] = contextvars.ContextVar(
    "drivepipe_invocation", default=()
)


@contextlib.contextmanager
def invocation(**fields: str | None) -> Iterator[None]:
    """Within the block, every ``drivepipe`` log line carries ``fields`` (``None`` ones left
    out), e.g. ``aws_request_id``; threads started inside copy them only if given the context."""
    token = _INVOCATION.set(tuple((k, v) for k, v in fields.items() if v))
    try:
        yield
    finally:
        _INVOCATION.reset(token)


class InvocationFilter(logging.Filter):
    """Adds the current invocation's fields (see :func:`invocation`) to each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _INVOCATION.get():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


# Values read at run time (a webhook URL), longest first; replaced whole, never mutated, so a
# thread formatting a line while another registers a value sees one consistent tuple.
_registered: tuple[str, ...] = ()


def register_secret(value: str) -> None:
    """Mask ``value`` in every log line from now on (a credential read at run time, such as a
    webhook URL, whose variable name :data:`SECRET_ENV_VARS` cannot know)."""
    global _registered
    if value and len(value) >= 4 and value not in _registered:
        _registered = tuple(sorted({*_registered, value}, key=len, reverse=True))


def redact(text: str) -> str:
    """Mask secret values and credential-looking parameters in ``text``."""
    for known in _registered:
        text = text.replace(known, "***")
    for name in SECRET_ENV_VARS:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(r"\1***", text)
    return text


def escape_controls(text: str) -> str:
    """``text`` with every control character written as an escape (``\\n``, ``\\x1b``)."""
    return text.translate(_CONTROL)


class RedactingFilter(logging.Filter):
    """Mask secrets in a record's message, string extras and traceback, whoever formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: let the formatter report it as logging does
            return True
        record.msg, record.args = redact(message), None
        for name, value in vars(record).items():
            if name not in _RESERVED and isinstance(value, str):
                setattr(record, name, redact(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def _third_party_level(root_level: int) -> int:
    """INFO, or the root's level when higher; ``$DRIVEPIPE_LOG_THIRD_PARTY`` when it is set."""
    raw = os.environ.get(THIRD_PARTY_ENV, "").strip().upper()
    if not raw:
        return max(logging.INFO, root_level)
    if raw not in LOG_LEVELS:
        raise ConfigError(f"{THIRD_PARTY_ENV} {raw!r} is not one of {', '.join(LOG_LEVELS)}")
    return logging.getLevelNamesMapping()[raw]


def _add_redaction(handler: logging.Handler) -> None:
    if not any(isinstance(f, RedactingFilter) for f in handler.filters):
        handler.addFilter(RedactingFilter())


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
        line = json.dumps(entry, default=str, ensure_ascii=False).translate(_JSON_LINE_BREAKS)
        return redact(line)


class TextFormatter(logging.Formatter):
    """``LEVEL logger: message key=value ...`` for terminals."""

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(
            f"{escape_controls(k)}={escape_controls(str(v))}"
            for k, v in vars(record).items()
            if k not in _RESERVED
        )
        line = f"{record.levelname:<7} {record.name}: {escape_controls(record.getMessage())}"
        if extras:
            line += f"  {extras}"
        trace = record.exc_text or (
            self.formatException(record.exc_info) if record.exc_info else ""
        )
        if trace:
            # one real line per traceback line, each indented: none can pass for a log line
            line += "".join(f"\n  | {escape_controls(part)}" for part in trace.splitlines())
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

    Also caps the third-party loggers (see the module docstring) and puts a
    :class:`RedactingFilter` on every root handler. Raises ``ConfigError`` naming the setting
    when a level is not a log level.
    """
    name = _level_name(level)
    use_json = in_cloud() or os.environ.get("DRIVEPIPE_LOG_FORMAT") == "json"
    if json_lines is not None:
        use_json = json_lines
    logger = logging.getLogger("drivepipe")
    handler = logging.StreamHandler(sys.stderr if not in_cloud() else sys.stdout)
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    handler.addFilter(InvocationFilter())
    _add_redaction(handler)
    logger.handlers[:] = [handler]
    logger.setLevel(name)
    logger.propagate = False
    root = logging.getLogger()
    third_party = _third_party_level(root.getEffectiveLevel())
    for other in THIRD_PARTY_LOGGERS:
        logging.getLogger(other).setLevel(third_party)
    if os.environ.get(THIRD_PARTY_ENV, "").strip() and not root.handlers:
        # Asked for third-party lines, and nothing would print them (Cloud Run has no root
        # handler, unlike Lambda): they go through ours, redaction and format included.
        root.addHandler(handler)
    for root_handler in root.handlers:
        _add_redaction(root_handler)


def get_logger(name: str) -> logging.Logger:
    """A child of the ``drivepipe`` logger."""
    return logging.getLogger(f"drivepipe.{name}")
