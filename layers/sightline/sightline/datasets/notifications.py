"""S3 object notifications, whichever way they reach the register function.

- S3 event notifications (``{"Records": [{"eventSource": "aws:s3", ...}]}``): keys are URL-encoded.
- EventBridge (``{"source": "aws.s3", "detail-type": "Object Created", ...}``): keys are sent as they are; the
  decoded form is kept as a fallback because some producers encode them anyway.
- The same notifications wrapped in SQS or SNS records.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterator
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger

logger = Logger(child=True)

CREATED = "created"
REMOVED = "removed"
_EVENTBRIDGE_ACTIONS = {"Object Created": CREATED, "Object Deleted": REMOVED}


@dataclass(frozen=True)
class ObjectNotification:
    action: str  # CREATED or REMOVED
    bucket: str
    key: str
    etag: str | None = None
    version_id: str | None = None
    sequencer: str | None = None
    alternate_key: str | None = None  # try this key when ``key`` does not exist


def _s3_record(record: dict[str, Any]) -> ObjectNotification | None:
    name = str(record.get("eventName", ""))
    if name.startswith("ObjectCreated"):
        action = CREATED
    elif name.startswith("ObjectRemoved"):
        action = REMOVED
    else:
        return None
    s3 = record.get("s3") or {}
    bucket = (s3.get("bucket") or {}).get("name")
    obj = s3.get("object") or {}
    if not bucket or not obj.get("key"):
        logger.warning("S3 record without bucket or key", extra={"record": record})
        return None
    return ObjectNotification(
        action=action,
        bucket=bucket,
        key=unquote_plus(obj["key"]),
        etag=obj.get("eTag") or obj.get("etag"),
        version_id=obj.get("versionId"),
        sequencer=obj.get("sequencer"),
    )


def _eventbridge(event: dict[str, Any]) -> ObjectNotification | None:
    action = _EVENTBRIDGE_ACTIONS.get(str(event.get("detail-type", "")))
    detail = event.get("detail") or {}
    bucket = (detail.get("bucket") or {}).get("name")
    obj = detail.get("object") or {}
    if action is None or not bucket or not obj.get("key"):
        logger.warning("unexpected EventBridge S3 event", extra={"detail_type": event.get("detail-type")})
        return None
    key = obj["key"]
    decoded = unquote_plus(key)
    return ObjectNotification(
        action=action,
        bucket=bucket,
        key=key,
        etag=obj.get("etag"),
        version_id=obj.get("version-id"),
        sequencer=obj.get("sequencer"),
        alternate_key=decoded if decoded != key else None,
    )


def _embedded(text: Any) -> Iterator[ObjectNotification]:
    try:
        yield from object_notifications(json.loads(text))
    except (TypeError, ValueError):
        logger.warning("queued message is not an S3 notification")


def object_notifications(event: Any) -> Iterator[ObjectNotification]:
    """Every object created or removed that ``event`` reports, in order; anything else is skipped."""
    if not isinstance(event, dict):
        return
    if event.get("source") == "aws.s3" and "detail" in event:
        notification = _eventbridge(event)
        if notification is not None:
            yield notification
        return
    for record in event.get("Records") or []:
        if not isinstance(record, dict):
            continue
        source = record.get("eventSource") or record.get("EventSource")
        if source == "aws:sqs":
            yield from _embedded(record.get("body"))
        elif source == "aws:sns":
            yield from _embedded((record.get("Sns") or {}).get("Message"))
        elif "s3" in record:
            notification = _s3_record(record)
            if notification is not None:
                yield notification
    # Anything else (the s3:TestEvent sent when notifications are configured) reports no object.
