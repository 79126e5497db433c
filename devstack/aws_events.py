"""AWS events of the exact shape Lambda receives, for local delivery and tests.

``chalice local`` fires neither S3 nor schedule events, and Chalice's own test helper
``generate_s3_event`` does not URL-encode keys the way S3 does. These builders produce what
S3 and EventBridge really send, so the handlers are exercised against the real wire format.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus

DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT = "123456789012"


def s3_encode_key(key: str) -> str:
    """Encode an object key as S3 notifications do: form-encoded, ``/`` left alone.

    A space becomes ``+``, a literal ``+`` becomes ``%2B``, parentheses become ``%28``/``%29``
    and non-ASCII characters are percent-encoded UTF-8.
    """
    return quote_plus(key, safe="/")


def _event_time(moment: datetime | None) -> str:
    moment = moment or datetime.now(UTC)
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


def next_sequencer() -> str:
    """A hex sequencer that grows with time, like S3's per-key ordering token."""
    return f"{time.time_ns():018X}"


def s3_put_record(
    bucket: str,
    key: str,
    *,
    size: int,
    etag: str,
    region: str = DEFAULT_REGION,
    version_id: str | None = None,
    sequencer: str | None = None,
    event_time: datetime | None = None,
    event_name: str = "ObjectCreated:Put",
) -> dict[str, Any]:
    """One ``Records[]`` entry of an S3 event notification (eventVersion 2.1)."""
    obj: dict[str, Any] = {
        "key": s3_encode_key(key),
        "size": size,
        "eTag": etag.strip('"'),
        "sequencer": sequencer or next_sequencer(),
    }
    if version_id:
        obj["versionId"] = version_id
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": region,
        "eventTime": _event_time(event_time),
        "eventName": event_name,
        "userIdentity": {"principalId": "AWS:AIDAEXAMPLELOCALDEV"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {
            "x-amz-request-id": uuid.uuid4().hex[:16].upper(),
            "x-amz-id-2": uuid.uuid4().hex,
        },
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "drivepipe-local-on_upload",
            "bucket": {
                "name": bucket,
                "ownerIdentity": {"principalId": "A3EXAMPLELOCAL"},
                "arn": f"arn:aws:s3:::{bucket}",
            },
            "object": obj,
        },
    }


def s3_event(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """An S3 notification carrying ``records`` (S3 may batch several)."""
    return {"Records": list(records)}


def scheduled_event(
    rule_name: str = "drivepipe-dev-on_schedule-event",
    *,
    region: str = DEFAULT_REGION,
    account: str = DEFAULT_ACCOUNT,
    moment: datetime | None = None,
) -> dict[str, Any]:
    """An EventBridge ``Scheduled Event`` as a schedule rule delivers it to Lambda."""
    moment = (moment or datetime.now(UTC)).astimezone(UTC)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account,
        "time": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"arn:aws:events:{region}:{account}:rule/{rule_name}"],
        "detail": {},
    }
