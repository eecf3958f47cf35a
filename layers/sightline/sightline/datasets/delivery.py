"""Batches of S3 notifications from the register function's queue.

Each object is registered on its own (``registration.register_object`` without its recompute), several at once
(the work is S3 and DynamoDB round trips); every dataset a batch touched is recomputed once, after the batch: the
debounce that makes 2,000 loose uploads cost a few recomputes instead of 2,000. A message whose object hit
throttling or a service error is reported as a batch item failure, so SQS delivers only that message again; bad
data never fails a message (it becomes issues).
"""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools import Logger

from sightline import aws
from sightline.datasets import deletion, queued_work  # noqa: F401 - deletion registers its queued work
from sightline.datasets.notifications import REMOVED, ObjectNotification, object_notifications
from sightline.datasets.registration import recompute_dataset, register_object, unregister_object

logger = Logger(child=True)

# Messages registered at once within a batch; each is a handful of S3 and DynamoDB calls, mostly waiting. The
# threads live as long as the warm container, so their per-thread DynamoDB resources are made once.
MESSAGE_WORKERS = 8
_workers: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _workers
    if _workers is None:
        _workers = ThreadPoolExecutor(max_workers=MESSAGE_WORKERS, thread_name_prefix="register")
    return _workers


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
    failures: dict[str, RetryableRegistrationError] = field(default_factory=dict)  # by message id

    def register_messages(self, messages: list[tuple[str, str]]) -> None:
        """Register the objects of every ``(message id, body)`` at once; a message that must be retried is
        remembered for ``raise_failure``."""
        pool = _pool()
        futures = {message_id: pool.submit(self.register_message, body) for message_id, body in messages}
        for message_id, future in futures.items():
            error = future.exception()
            if isinstance(error, RetryableRegistrationError):
                self.failures[message_id] = error
                continue
            if error is not None:
                raise error
            for outcome in future.result():
                if outcome.get("dataset") and outcome["status"] not in ("skipped", "rejected"):
                    self.datasets.add(outcome["dataset"])

    def raise_failure(self, message_id: str) -> None:
        """Raise what stopped the message's registration, if anything did (the batch processor reports it)."""
        if message_id in self.failures:
            raise self.failures[message_id]

    @staticmethod
    def register_message(body: str) -> list[dict[str, Any]]:
        """The outcome of every object one queued S3 notification reports. Raises ``RetryableRegistrationError``
        when one hit throttling or a service error (the objects before it stay registered; a redelivery skips
        them)."""
        try:
            document = json.loads(body)
            if queued_work.is_work(document):
                return RegistrationBatch.run_work(document)
            notifications = list(object_notifications(document))
        except (TypeError, ValueError, RecursionError):
            logger.warning("queued message is not an S3 notification; dropped", extra={"body": str(body)[:200]})
            return []
        outcomes = []
        for notification in notifications:
            try:
                outcome = register_notification(notification)
            except Exception as error:  # noqa: BLE001 - decided below: retry, or log and go on
                if aws.is_retryable(error):
                    raise RetryableRegistrationError(f"{notification.key}: {error}") from error
                logger.exception("registration failed", extra={"key": notification.key})
                outcome = {"key": notification.key, "status": "failed", "error": str(error)}
            logger.info("object handled", extra=brief(outcome))
            outcomes.append(outcome)
        return outcomes

    @staticmethod
    def run_work(document: dict[str, Any]) -> list[dict[str, Any]]:
        """Work the service queued for itself (``sightline.datasets.queued_work``); retried like an upload."""
        try:
            return queued_work.run(document)
        except queued_work.UnknownWork as error:
            logger.warning(str(error))
            return []
        except Exception as error:  # noqa: BLE001 - retry what may pass later, log the rest
            if aws.is_retryable(error):
                raise RetryableRegistrationError(f"{document[queued_work.WORK_FIELD]}: {error}") from error
            raise

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
