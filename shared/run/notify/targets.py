"""One sender per target; each sends one message or raises :class:`SendFailed`.

A failure's text never holds the webhook URL: it is the HTTP status or the exception's class
name (``requests`` puts the URL in its messages). The URL itself is registered with
:func:`shared.log.register_secret` as soon as it is read, so no log line carries it either,
not even urllib3's DEBUG line with the request path.
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import urlsplit

from shared.log import register_secret
from shared.run.notify.message import headline, slack_body, text_body
from shared.run.notify.options import NotifyOptions

TIMEOUT_SECONDS = 10.0
SNS_SUBJECT_CHARS = 99  # SNS: ASCII, no line breaks, under 100 characters
_SNS_RETRYABLE = frozenset(
    {"Throttling", "ThrottlingException", "InternalError", "InternalFailure", "ServiceUnavailable"}
)


class SendFailed(Exception):
    """A message was not delivered; ``retryable`` when trying again may help."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


# ---- SNS ------------------------------------------------------------------------------------
def send_sns(topic_arn: str, event: dict[str, Any], *, client: Any = None) -> str:
    """Publish to an SNS topic: plain text for e-mail (and SMS), the event JSON for SQS, Lambda
    and HTTP subscribers (``MessageStructure=json``); returns the message id."""
    event_json = json.dumps(event, ensure_ascii=False)
    text = text_body(event)
    message = {"default": text, "email": text, "email-json": event_json}
    message.update({protocol: event_json for protocol in ("sqs", "lambda", "http", "https")})
    subject = headline(event).encode("ascii", "replace").decode("ascii")[:SNS_SUBJECT_CHARS]
    args: dict[str, Any] = {
        "TopicArn": topic_arn,
        "Subject": subject,
        "Message": json.dumps(message, ensure_ascii=False),
        "MessageStructure": "json",
        "MessageAttributes": {
            name: {"DataType": "String", "StringValue": str(event[name])}
            for name in ("pipeline", "run_id", "status")
        },
    }
    if topic_arn.endswith(".fifo"):
        args.update(MessageGroupId=event["pipeline"], MessageDeduplicationId=event["run_id"])
    try:
        if client is None:
            import boto3

            region = topic_arn.split(":")[3]
            endpoint = os.environ.get("AWS_ENDPOINT_URL")
            client = boto3.client("sns", region_name=region, endpoint_url=endpoint)
        answer = client.publish(**args)
    except Exception as exc:  # botocore ClientError, connection and credential errors
        code = getattr(exc, "response", {}).get("Error", {}).get("Code")
        if code:
            retryable = code in _SNS_RETRYABLE
            raise SendFailed(f"SNS {code}: {exc}", retryable=retryable) from exc
        name = type(exc).__name__
        retryable = "Credentials" not in name and "ParamValidation" not in name
        raise SendFailed(f"SNS {name}: {exc}", retryable=retryable) from exc
    return str(answer.get("MessageId", ""))


# ---- Pub/Sub --------------------------------------------------------------------------------
def send_pubsub(topic: str, event: dict[str, Any], *, publisher: Any = None) -> str:
    """Publish the event JSON to a Pub/Sub topic (REST; ``PUBSUB_EMULATOR_HOST`` locally),
    with ``pipeline``, ``run_id``, ``status`` and ``type`` attributes; returns the message id."""
    from shared.run.fanout.queues import PubSubTopic

    attributes = {name: str(event[name]) for name in ("pipeline", "run_id", "status", "type")}
    try:
        publisher = publisher or PubSubTopic(topic)
        answer = publisher.publish_one(json.dumps(event, ensure_ascii=False).encode(), attributes)
    except Exception as exc:  # requests / google-auth transport errors, a missing project
        raise SendFailed(f"Pub/Sub {type(exc).__name__}: {exc}", retryable=True) from exc
    if answer.status_code != 200:
        retryable = answer.status_code in (408, 429) or answer.status_code >= 500
        raise SendFailed(f"Pub/Sub answered HTTP {answer.status_code}", retryable=retryable)
    ids = answer.json().get("messageIds") or [""]
    return str(ids[0])


# ---- webhook --------------------------------------------------------------------------------
def webhook_url(options: NotifyOptions, env: dict[str, str] | None = None) -> str:
    """The webhook URL, from its variable or its secret, registered for redaction at once."""
    env = dict(os.environ) if env is None else env
    if options.webhook_url_env:
        url = env.get(options.webhook_url_env, "").strip()
        if not url:
            raise SendFailed(
                f"environment variable {options.webhook_url_env} is not set", retryable=False
            )
    else:
        from shared.secrets import read_secret

        try:
            raw = read_secret(str(options.webhook_secret)).strip()
        except Exception as exc:
            raise SendFailed(str(exc), retryable=True) from exc
        url = _url_in_secret(raw)
    register_secret(url)
    parts = urlsplit(url)
    if parts.path not in ("", "/"):
        register_secret(parts.path + (f"?{parts.query}" if parts.query else ""))
    if parts.scheme not in ("https", "http") or not parts.hostname:
        where = options.webhook_url_env or options.webhook_secret
        raise SendFailed(f"the webhook URL in {where} is not an http(s) URL", retryable=False)
    return url


def _url_in_secret(raw: str) -> str:
    """A secret holds the URL itself, or ``{"url": ...}`` / ``{"webhook_url": ...}``."""
    if raw.startswith("{"):
        try:
            data = json.loads(raw)
        except ValueError:
            return raw
        if isinstance(data, dict):
            return str(data.get("webhook_url") or data.get("url") or "")
    return raw


def send_webhook(
    url: str, event: dict[str, Any], *, fmt: str = "slack", session: Any = None
) -> int:
    """POST the Slack-compatible body (or, with ``fmt="json"``, the event); returns the status."""
    import requests

    body = slack_body(event) if fmt == "slack" else event
    http = session or requests
    try:
        answer = http.post(url, json=body, timeout=TIMEOUT_SECONDS, allow_redirects=False)
    except requests.RequestException as exc:  # its text holds the URL: keep only the class
        raise SendFailed(f"webhook {type(exc).__name__}", retryable=True) from None
    status = int(answer.status_code)
    if 200 <= status < 300:
        return status
    retryable = status in (408, 429) or status >= 500
    raise SendFailed(f"webhook answered HTTP {status}", retryable=retryable)
