"""Batches of S3 notifications from the register function's queue.

Each object is registered on its own (``registration.register_object`` without its recompute); every dataset a
batch touched is recomputed once, after the batch: the debounce that makes 2,000 loose uploads cost a few
recomputes instead of 2,000. A message whose object hit throttling or a service error is reported as a batch item
failure, so SQS delivers only that message again; bad data never fails a message (it becomes issues).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools import Logger

from sightline import aws
from sightline.datasets.notifications import REMOVED, ObjectNotification, object_notifications
from sightline.datasets.registration import recompute_dataset, register_object, unregister_object

logger = Logger(child=True)


class RetryableRegistrationError(RuntimeError):
    """Throttling or a service error: the message (or, for a recompute, the batch) is delivered again."""


def register_notification(notification: ObjectNotification) -> dict[str, Any]:
    """One created or removed object, registered without recomputing its dataset."""
    if notification.action == REMOVED:
        return unregister_object(notification.bucket, notification.key, sequencer=notification.sequencer,
                                 recompute=False)
    outcome = register_object(notification.bucket, notification.key, notification.etag, notification.version_id,
                              sequencer=notification.sequencer, recompute=False)
    if outcome["status"] == "missing" and notification.alternate_key:
        outcome = register_object(notification.bucket, notification.alternate_key, notification.etag,
                                  notification.version_id, sequencer=notification.sequencer, recompute=False)
    return outcome


def brief(outcome: dict[str, Any]) -> dict[str, Any]:
    """What the log says about one object (the dataset summary stays in the table)."""
    summary = {name: outcome[name] for name in ("key", "dataset", "status", "kind", "issue_count") if name in outcome}
    if outcome.get("issues"):
        summary["issues"] = outcome["issues"][:5]
    return summary


@dataclass
class RegistrationBatch:
    """The datasets one batch of messages changed, to recompute once when the batch is done."""

    datasets: set[str] = field(default_factory=set)
    outcomes: list[dict[str, Any]] = field(default_factory=list)

    def register_message(self, body: str) -> None:
        """Every object one queued S3 notification reports. Raises ``RetryableRegistrationError`` when one hit
        throttling or a service error (the objects before it stay registered; a redelivery skips them)."""
        try:
            notifications = list(object_notifications(json.loads(body)))
        except (TypeError, ValueError, RecursionError):
            logger.warning("queued message is not an S3 notification; dropped", extra={"body": str(body)[:200]})
            return
        for notification in notifications:
            try:
                outcome = register_notification(notification)
            except Exception as error:  # noqa: BLE001 - decided below: retry, or log and go on
                if aws.is_retryable(error):
                    raise RetryableRegistrationError(f"{notification.key}: {error}") from error
                logger.exception("registration failed", extra={"key": notification.key})
                outcome = {"key": notification.key, "status": "failed", "error": str(error)}
            logger.info("object handled", extra=brief(outcome))
            self.outcomes.append(outcome)
            if outcome.get("dataset") and outcome["status"] not in ("skipped", "rejected"):
                self.datasets.add(outcome["dataset"])

    def recompute(self) -> dict[str, dict[str, Any]]:
        """Recompute each dataset the batch touched. A retryable failure raises, so the whole batch comes again
        (its registrations are then recognised as unchanged and the recompute runs once more)."""
        summaries: dict[str, dict[str, Any]] = {}
        failed: list[str] = []
        for name in sorted(self.datasets):
            try:
                summaries[name] = recompute_dataset(name)
            except Exception as error:  # noqa: BLE001 - the other datasets still get their recompute
                logger.exception("recompute failed", extra={"dataset": name})
                if aws.is_retryable(error):
                    failed.append(name)
        if failed:
            raise RetryableRegistrationError(f"recompute of {', '.join(failed)} hit throttling or service errors")
        return summaries
