"""Work the service queues for itself on the register function's queue, beside S3's notifications.

A long job (deleting a dataset, a chunk of a huge archive) does not fit one API call or one invocation, so it is
a message ``{"sightline_work": "<kind>", ...}`` on the same queue: the register function runs it with the same
retries and dead-letter queue as an upload, and a job that needs more time queues its own continuation.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sightline import aws
from sightline.config import get_settings

WORK_FIELD = "sightline_work"
# SQS delays a message by at most 15 minutes.
MAX_DELAY_SECONDS = 900

# kind -> the function that does one message's work and returns its outcomes (``{"key", "dataset", "status"}``)
Handler = Callable[[dict[str, Any]], list[dict[str, Any]]]
_HANDLERS: dict[str, Handler] = {}


class UnknownWork(ValueError):
    """A message names work this release does not know; it is logged and dropped."""


def handles(kind: str) -> Callable[[Handler], Handler]:
    """Register the handler of ``kind`` (at import of the module that does the work)."""

    def register(handler: Handler) -> Handler:
        _HANDLERS[kind] = handler
        return handler

    return register


def is_work(document: Any) -> bool:
    return isinstance(document, dict) and isinstance(document.get(WORK_FIELD), str)


def run(document: dict[str, Any]) -> list[dict[str, Any]]:
    handler = _HANDLERS.get(document[WORK_FIELD])
    if handler is None:
        raise UnknownWork(f"unknown queued work {document[WORK_FIELD][:60]!r}")
    return handler(document)


def enqueue(kind: str, payload: dict[str, Any], *, delay_seconds: int = 0) -> None:
    """Queue ``kind`` with ``payload`` for the register function."""
    aws.client("sqs").send_message(
        QueueUrl=get_settings().dataset_queue_url,
        MessageBody=json.dumps({WORK_FIELD: kind, **payload}, separators=(",", ":")),
        DelaySeconds=max(0, min(delay_seconds, MAX_DELAY_SECONDS)),
    )
