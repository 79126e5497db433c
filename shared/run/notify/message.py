"""When a run is worth a message, and the message in each form: event JSON, text, Slack body.

The event says what an operator needs to act without opening anything else: the run id,
pipeline, trigger, counts, each failed input with its reason and quarantine location (the
first :data:`MAX_FAILED_LISTED`; ``failed_total`` says how many), and where the manifest is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shared.run.history import run_status
from shared.storage.layout import run_key

if TYPE_CHECKING:
    from shared.run.manifest import RunManifest
    from shared.run.notify.options import NotifyOptions
    from shared.storage import Storage

EVENT_TYPE = "drivepipe.run"
MAX_FAILED_LISTED = 20
MAX_REASON_CHARS = 500
SLACK_SECTION_CHARS = 2900  # Slack caps a section's text at 3,000 characters


def reasons(manifest: RunManifest, options: NotifyOptions) -> list[str]:
    """Which of ``options.on`` this run meets (empty: no message)."""
    met = {
        "failed": bool(manifest.failed),
        "quarantined": any(r.quarantine_key for r in manifest.inputs),
        "removal_blocked": bool(manifest.removals_blocked)
        or any(r.status == "removal_blocked" for r in manifest.inputs),
        "always": True,
    }
    return [when for when in options.on if met[when]]


def _clip(text: str | None, limit: int = MAX_REASON_CHARS) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


def run_event(dest: Storage, manifest: RunManifest, why: list[str]) -> dict[str, Any]:
    """The message as JSON (Pub/Sub data, SNS to SQS/HTTP/Lambda, the ``json`` webhook body)."""
    counts = manifest.counts()
    failed = manifest.failed
    return {
        "type": EVENT_TYPE,
        "reasons": why,
        "run_id": manifest.run_id,
        "pipeline": manifest.pipeline,
        "trigger": manifest.trigger,
        "status": run_status(counts, manifest.removals_blocked),
        "started_at": manifest.started_at,
        "ended_at": manifest.ended_at,
        "counts": {name: n for name, n in counts.items() if n},
        "failed_total": len(failed),
        "failed": [
            {
                "path": r.path,
                "reason": _clip(r.error),
                "quarantine_key": r.quarantine_key,
                "quarantine_url": dest.url(r.quarantine_key) if r.quarantine_key else None,
            }
            for r in failed[:MAX_FAILED_LISTED]
        ],
        "removals_blocked": manifest.removals_blocked,
        "destination": manifest.destination,
        "manifest": dest.url(run_key(manifest.run_id)),
    }


def headline(event: dict[str, Any]) -> str:
    """One line: what happened to which pipeline (the e-mail subject, Slack's fallback text)."""
    parts = []
    if event["failed_total"]:
        n = event["failed_total"]
        parts.append(f"{n} input{'s' if n != 1 else ''} failed")
    if event["removals_blocked"]:
        parts.append("removals held back")
    what = ", ".join(parts) or f"run {event['status']}"
    return f"drivepipe {event['pipeline']}: {what} (run {event['run_id']})"


def text_body(event: dict[str, Any]) -> str:
    """The plain-text message (SNS e-mail subscriptions show this)."""
    counts = ", ".join(f"{k}={v}" for k, v in event["counts"].items()) or "no inputs"
    lines = [
        headline(event),
        "",
        f"pipeline: {event['pipeline']}",
        f"run:      {event['run_id']} (trigger {event['trigger']}, ended {event['ended_at']})",
        f"counts:   {counts}",
    ]
    for item in event["failed"]:
        lines.append(f"failed:   {item['path']}: {item['reason']}")
        if item["quarantine_url"]:
            lines.append(f"          quarantined at {item['quarantine_url']}")
    hidden = event["failed_total"] - len(event["failed"])
    if hidden > 0:
        lines.append(f"          … and {hidden} more failed inputs (see the manifest)")
    if event["removals_blocked"]:
        lines.append(f"removals: held back: {event['removals_blocked']}")
    lines += [f"manifest: {event['manifest']}", f"history:  drivepipe runs show {event['run_id']}"]
    return "\n".join(lines)


def _slack_escape(text: str) -> str:
    """Slack mrkdwn's three control characters, escaped as Slack documents."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_body(event: dict[str, Any]) -> dict[str, Any]:
    """A Slack incoming-webhook body: ``text`` (notifications, fallback) and Block Kit blocks."""
    title = _slack_escape(headline(event))
    counts = " · ".join(f"{k} {v}" for k, v in event["counts"].items()) or "no inputs"
    failures = [
        f"• `{_slack_escape(item['path'])}`: {_slack_escape(item['reason'] or '')}"
        + (f"\n   quarantined at `{item['quarantine_url']}`" if item["quarantine_url"] else "")
        for item in event["failed"]
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{title}*\n{counts}"}},
    ]
    if failures:
        text = "\n".join(failures)
        if len(text) > SLACK_SECTION_CHARS:
            text = text[: SLACK_SECTION_CHARS - 1] + "…"
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
    context = f"trigger {event['trigger']} · manifest `{event['manifest']}`"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
    return {"text": title, "blocks": blocks}
