"""Batches of S3 notifications from the register function's queue.

The objects of a batch are registered together (``registration.register_uploads``: one BatchGetItem per 100
source items, each object read and stored on one of several threads, the source items written in transactions);
every dataset a batch touched is recomputed once, after the batch: the debounce that makes 2,000 loose uploads
cost a few recomputes instead of 2,000. A message whose object hit throttling or a service error is reported as a
batch item failure, so SQS delivers only that message again; bad data never fails a message (it becomes issues).
Work the service queued for itself (``queued_work``: dataset deletion, chunks of big archives) runs beside them.
"""
from __future__ import annotations

import json
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools import Logger

from sightline import aws
from sightline.datasets import deletion, fanout, queued_work  # noqa: F401 - they register their queued work
from sightline.datasets.notifications import REMOVED, ObjectNotification, object_notifications
from sightline.datasets.registration import Upload, recompute_dataset, register_uploads, unregister_object

logger = Logger(child=True)

# Objects registered at once within a batch; each is a few S3 and DynamoDB calls, mostly waiting. The threads
# live as long as the warm container, so their per-thread DynamoDB resources are made once.
MESSAGE_WORKERS = 8
_workers: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _workers
    if _workers is None:
        _workers = ThreadPoolExecutor(max_workers=MESSAGE_WORKERS, thread_name_prefix="register")
    return _workers


class RetryableRegistrationError(RuntimeError):
    """Throttling or a service error: the message (or, for a recompute, the batch) is delivered again."""


def brief(outcome: dict[str, Any]) -> dict[str, Any]:
    """What the log says about one object (the dataset summary stays in the table)."""
    summary = {name: outcome[name] for name in ("key", "dataset", "status", "kind", "issue_count") if name in outcome}
    if outcome.get("issues"):
        summary["issues"] = outcome["issues"][:5]
    return summary


def _upload(notification: ObjectNotification, key: str | None = None) -> Upload:
    return Upload(notification.bucket, key or notification.key, notification.etag, notification.version_id,
                  notification.sequencer)


@dataclass
class RegistrationBatch:
    """The datasets one batch of messages changed, to recompute once when the batch is done."""

    datasets: set[str] = field(default_factory=set)
    failures: dict[str, RetryableRegistrationError] = field(default_factory=dict)  # by message id
    outcomes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # by message id

    @staticmethod
    def register_message(body: str) -> list[dict[str, Any]]:
        """The outcome of every object (or queued work) one message reports, registered on its own. Raises
        ``RetryableRegistrationError`` when one hit throttling or a service error."""
        batch = RegistrationBatch()
        batch.register_messages([("message", body)])
        batch.raise_failure("message")
        return batch.outcomes.get("message", [])

    def register_messages(self, messages: list[tuple[str, str]]) -> None:
        """Register the objects of every ``(message id, body)`` at once; a message that must be retried is
        remembered for ``raise_failure``."""
        pool = _pool()
        work: dict[str, Future[list[dict[str, Any]]]] = {}
        created: list[tuple[str, ObjectNotification]] = []
        removed: list[tuple[str, ObjectNotification, Future[dict[str, Any]]]] = []
        for message_id, body in messages:
            try:
                document = json.loads(body)
                if queued_work.is_work(document):
                    work[message_id] = pool.submit(self.run_work, document)
                    continue
                notifications = list(object_notifications(document))
            except (TypeError, ValueError, RecursionError):
                logger.warning("queued message is not an S3 notification; dropped", extra={"body": str(body)[:200]})
                continue
            for notification in notifications:
                if notification.action == REMOVED:
                    removed.append((message_id, notification, pool.submit(
                        unregister_object, notification.bucket, notification.key, sequencer=notification.sequencer,
                        recompute=False)))
                else:
                    created.append((message_id, notification))
        results = register_uploads([_upload(notification) for _, notification in created], submit=pool.submit)
        self._try_alternate_keys(created, results, pool)
        for (message_id, notification), result in zip(created, results):
            self._record(message_id, notification.key, result)
        for message_id, notification, future in removed:
            self._record(message_id, notification.key, future.exception() or future.result())
        for message_id, future in work.items():
            error = future.exception()
            if isinstance(error, RetryableRegistrationError):
                self.failures[message_id] = error
            elif error is not None:
                raise error
            else:
                for outcome in future.result():
                    self._count(message_id, outcome)

    @staticmethod
    def _try_alternate_keys(created: list[tuple[str, ObjectNotification]], results: list[Any],
                            pool: ThreadPoolExecutor) -> None:
        """EventBridge sends keys as they are, but some producers encode them anyway: a missing object is tried
        again under the decoded key."""
        again = [position for position, ((_, notification), result) in enumerate(zip(created, results))
                 if notification.alternate_key and isinstance(result, dict) and result["status"] == "missing"]
        if again:
            retried = register_uploads([_upload(created[position][1], created[position][1].alternate_key)
                                        for position in again], submit=pool.submit)
            for position, result in zip(again, retried):
                results[position] = result

    def _record(self, message_id: str, key: str, result: dict[str, Any] | BaseException) -> None:
        """One object's outcome, or the error that stopped it: retried when it may pass later, else logged."""
        if isinstance(result, BaseException):
            if aws.is_retryable(result):
                self.failures.setdefault(message_id, RetryableRegistrationError(f"{key}: {result}"))
                return
            logger.error("registration failed", extra={"key": key, "error": repr(result)}, exc_info=result)
            result = {"key": key, "status": "failed", "error": str(result)}
        logger.info("object handled", extra=brief(result))
        self._count(message_id, result)

    def _count(self, message_id: str, outcome: dict[str, Any]) -> None:
        self.outcomes.setdefault(message_id, []).append(outcome)
        if outcome.get("dataset") and outcome["status"] not in ("skipped", "rejected"):
            self.datasets.add(outcome["dataset"])

    def raise_failure(self, message_id: str) -> None:
        """Raise what stopped the message's registration, if anything did (the batch processor reports it)."""
        if message_id in self.failures:
            raise self.failures[message_id]

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
