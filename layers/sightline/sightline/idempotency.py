"""``Idempotency-Key`` on the API's POST routes (all but predict): a client that retries a request with the same
key gets the first answer again instead of a second model, version or GPU run.

Powertools' idempotency utility keeps each answer in the table for a day (items ``idempotency#<function>`` /
``<hash>``, expired by the table's TTL on ``expiration``). The same key with another method, path or body is a
422; a retry while the first request still runs is a 409. Server errors are not kept, so a retry after one runs
the request again.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyValidationError,
)

from sightline.config import get_settings
from sightline.http_events import event_body, event_header

HEADER = "Idempotency-Key"
KEY_PATTERN = re.compile(r"[\x21-\x7e]{1,128}")  # printable ASCII without spaces, as the IETF draft suggests
EXPIRES_AFTER_SECONDS = 24 * 3600

Resolve = Callable[[dict[str, Any], Any], dict[str, Any]]


class _ServerError(Exception):
    """A 5xx answer: raised through the idempotency wrapper so that it is not kept."""

    def __init__(self, response: dict[str, Any]) -> None:
        super().__init__(response.get("statusCode"))
        self.response = response


def applies(event: dict[str, Any]) -> bool:
    method = str(event.get("httpMethod", "")).upper()
    return method == "POST" and not str(event.get("path", "")).endswith("/predict") and \
        event_header(event, HEADER) is not None


@lru_cache(maxsize=1)
def _config() -> IdempotencyConfig:
    return IdempotencyConfig(event_key_jmespath="[method, path, key]", payload_validation_jmespath="body",
                             expires_after_seconds=EXPIRES_AFTER_SECONDS, raise_on_no_idempotency_key=True)


@lru_cache(maxsize=1)
def _persistence() -> DynamoDBPersistenceLayer:
    return DynamoDBPersistenceLayer(table_name=get_settings().table_name, key_attr="pk", sort_key_attr="sk")


def _error(status: int, code: str, message: str) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"Content-Type": "application/json"},
            "body": json.dumps({"error": {"code": code, "message": message}}), "isBase64Encoded": False}


def resolve(event: dict[str, Any], context: Any, resolve_event: Resolve) -> dict[str, Any]:
    """Answer ``event`` through ``resolve_event`` once per idempotency key."""
    key = event_header(event, HEADER) or ""
    if not KEY_PATTERN.fullmatch(key):
        return _error(400, "invalid_idempotency_key",
                     f"{HEADER} must be 1 to 128 printable ASCII characters without spaces")
    request = {
        "method": "POST",
        "path": str(event.get("path", "")),
        "key": key,
        "body": hashlib.sha256(event_body(event)).hexdigest(),
    }
    config = _config()
    config.register_lambda_context(context)

    @idempotent_function(data_keyword_argument="request", config=config, persistence_store=_persistence())
    def once(request: dict[str, Any]) -> dict[str, Any]:
        response = resolve_event(event, context)
        if int(response.get("statusCode", 500)) >= 500:
            raise _ServerError(response)
        return json.loads(json.dumps(response))  # kept as JSON

    try:
        return once(request=request)
    except _ServerError as failure:
        return failure.response
    except IdempotencyValidationError:
        return _error(422, "idempotency_key_reused",
                     f"{HEADER} {key!r} was used for a different request (path or body); use a new key")
    except IdempotencyAlreadyInProgressError:
        return _error(409, "request_in_progress",
                     f"a request with {HEADER} {key!r} is still being answered; retry in a moment")
