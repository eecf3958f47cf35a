"""Lambda's SQS event source mapping, played by the local stack.

moto delivers a queue's messages to Lambda one ``SendMessage`` at a time, inside the sender's request, and
deletes them whatever ``batchItemFailures`` says. Lambda instead polls: it gathers up to ``BatchSize`` messages or
waits ``MaximumBatchingWindowInSeconds``, invokes the function once with the batch, deletes what succeeded and
leaves the failures to come back after the visibility timeout (and to the dead-letter queue after the queue's
``maxReceiveCount``, which moto applies on receive). This does the same through the SQS API.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("sightline.local.sqs")

SQS_RECEIVE_LIMIT = 10  # messages per ReceiveMessage (and Delete/ChangeMessageVisibilityBatch) call, SQS's limit
# Locally a failed message is retried after this many seconds instead of the queue's visibility timeout (90
# minutes for the register function's queue), so a retry is seen while one waits for it.
LOCAL_RETRY_SECONDS = 2


@dataclass(frozen=True)
class SqsEventSource:
    uuid: str
    function_arn: str
    queue_arn: str
    queue_url: str
    batch_size: int
    window_seconds: float
    report_item_failures: bool
    concurrency: int = 1  # batches in flight at once (the mapping's ScalingConfig.MaximumConcurrency)


Invoke = Callable[[str, dict], Any]  # (function ARN, event) -> InvocationResult (.payload, .error)


class SqsPoller:
    """Per event source, ``concurrency`` threads that each receive a batch, invoke, delete what succeeded."""

    def __init__(self, sqs: Any, invoke: Invoke, region: str) -> None:
        self.sqs = sqs
        self.invoke = invoke
        self.region = region
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def add(self, source: SqsEventSource) -> None:
        for number in range(max(1, source.concurrency)):
            thread = threading.Thread(target=self._run, args=(source,), name=f"sqs-{source.uuid[:8]}-{number}",
                                      daemon=True)
            self._threads.append(thread)
            thread.start()

    def shutdown(self, timeout: float = 10.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)

    def _run(self, source: SqsEventSource) -> None:
        # The next batch gathers while one is delivered (Lambda's pollers keep polling while the function runs),
        # and goes as soon as that delivery is done, its window permitting: a batch never waits its whole window
        # after the previous one when its messages were there all along.
        delivery: threading.Thread | None = None
        try:
            while not self._stop.is_set():
                try:
                    running = delivery
                    messages = self._gather(source, busy=lambda running=running: running is not None and running.is_alive())
                    if messages:
                        if delivery is not None:
                            delivery.join()
                        delivery = threading.Thread(target=self._deliver_logged, args=(source, messages),
                                                    name=f"{threading.current_thread().name}-deliver", daemon=True)
                        delivery.start()
                except Exception:  # noqa: BLE001 - the poller outlives any one failure, as Lambda's does
                    log.exception("polling %s failed", source.queue_arn)
                    self._stop.wait(1.0)
        finally:
            if delivery is not None:
                delivery.join()

    def _deliver_logged(self, source: SqsEventSource, messages: list[dict]) -> None:
        try:
            self.deliver(source, messages)
        except Exception:  # noqa: BLE001 - the messages come back after their visibility timeout
            log.exception("delivering %d messages from %s failed", len(messages), source.queue_arn)

    def _gather(self, source: SqsEventSource, busy: Callable[[], bool] = lambda: False) -> list[dict]:
        """Up to ``batch_size`` messages, waiting at most the batching window once the first has arrived, or,
        while ``busy()`` (the previous batch is still being delivered), until it is done."""
        messages: list[dict] = []
        deadline: float | None = None
        while len(messages) < source.batch_size and not self._stop.is_set():
            if deadline is not None and time.monotonic() >= deadline and not busy():
                break
            received = self.sqs.receive_message(
                QueueUrl=source.queue_url,
                MaxNumberOfMessages=min(SQS_RECEIVE_LIMIT, source.batch_size - len(messages)),
                WaitTimeSeconds=1 if deadline is None else 0,  # long-poll until a batch starts
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if received:
                messages += received
                deadline = deadline or time.monotonic() + source.window_seconds
            elif deadline is not None:
                remaining = deadline - time.monotonic()
                self._stop.wait(min(0.2, remaining) if remaining > 0 else 0.2)
        return messages

    def deliver(self, source: SqsEventSource, messages: list[dict]) -> None:
        """One invocation with ``messages``; delete the ones it did not report as failed."""
        event = {"Records": [self._record(source, message) for message in messages]}
        result = self.invoke(source.function_arn, event)
        failed: set[str] = {message["MessageId"] for message in messages}
        if not result.error:
            failed = set()
            if source.report_item_failures and isinstance(result.payload, dict):
                failed = {str(item.get("itemIdentifier")) for item in result.payload.get("batchItemFailures") or []}
        # As Lambda does, ten at a time: a message each was a fifth of the calls into moto of a bulk upload.
        succeeded = [message for message in messages if message["MessageId"] not in failed]
        for first in range(0, len(succeeded), SQS_RECEIVE_LIMIT):
            self.sqs.delete_message_batch(QueueUrl=source.queue_url, Entries=[
                {"Id": str(number), "ReceiptHandle": message["ReceiptHandle"]}
                for number, message in enumerate(succeeded[first:first + SQS_RECEIVE_LIMIT])])
        retried = [message for message in messages if message["MessageId"] in failed]
        for first in range(0, len(retried), SQS_RECEIVE_LIMIT):
            self.sqs.change_message_visibility_batch(QueueUrl=source.queue_url, Entries=[
                {"Id": str(number), "ReceiptHandle": message["ReceiptHandle"], "VisibilityTimeout": LOCAL_RETRY_SECONDS}
                for number, message in enumerate(retried[first:first + SQS_RECEIVE_LIMIT])])
        if failed:
            log.warning("%d of %d messages from %s failed and will be delivered again", len(failed), len(messages),
                        source.queue_arn.rsplit(":", 1)[-1])

    def _record(self, source: SqsEventSource, message: dict) -> dict:
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": message.get("Attributes", {}),
            "messageAttributes": message.get("MessageAttributes", {}),
            "md5OfBody": message.get("MD5OfBody"),
            "eventSource": "aws:sqs",
            "eventSourceARN": source.queue_arn,
            "awsRegion": self.region,
        }
