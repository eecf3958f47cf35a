"""Register function: S3 "object created" notifications under datasets/ -> registered dataset sources.

Each object is registered on its own; a bad object becomes issues on its dataset, never a failed invocation.
Only throttling and service errors fail the invocation, after every other object has been handled, so Lambda
retries the event; objects already registered are then recognised by their ETag and not processed again.
"""
from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from sightline.datasets.notifications import REMOVED, ObjectNotification, object_notifications
from sightline.aws import is_retryable
from sightline.datasets.registration import register_object, unregister_object

logger = Logger()


class RetryableRegistrationError(RuntimeError):
    """Some objects hit throttling or service errors; raising makes Lambda deliver the event again."""


def _handle(notification: ObjectNotification) -> dict[str, Any]:
    if notification.action == REMOVED:
        return unregister_object(notification.bucket, notification.key, sequencer=notification.sequencer)
    outcome = register_object(
        notification.bucket,
        notification.key,
        notification.etag,
        notification.version_id,
        sequencer=notification.sequencer,
    )
    if outcome["status"] == "missing" and notification.alternate_key:
        outcome = register_object(
            notification.bucket,
            notification.alternate_key,
            notification.etag,
            notification.version_id,
            sequencer=notification.sequencer,
        )
    return outcome


def _brief(outcome: dict[str, Any]) -> dict[str, Any]:
    # The dataset summary stays in the table; the result and the log only say what happened to each object.
    brief = {name: outcome[name] for name in ("key", "dataset", "status", "kind", "issue_count") if name in outcome}
    if outcome.get("issues"):
        brief["issues"] = outcome["issues"][:5]
    return brief


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    retry_keys: list[str] = []
    for notification in object_notifications(event):
        try:
            outcome = _handle(notification)
        except Exception as error:  # noqa: BLE001 - one object's failure must not lose the others
            if is_retryable(error):
                logger.warning("registration will be retried", extra={"key": notification.key, "error": str(error)})
                retry_keys.append(notification.key)
                results.append({"key": notification.key, "status": "retry"})
            else:
                logger.exception("registration failed", extra={"key": notification.key})
                results.append({"key": notification.key, "status": "failed", "error": str(error)})
            continue
        logger.info("object handled", extra=_brief(outcome))
        results.append(_brief(outcome))
    if retry_keys:
        raise RetryableRegistrationError(
            f"{len(retry_keys)} object(s) hit throttling or service errors: {', '.join(retry_keys[:10])}"
        )
    return {"results": results}
