"""The one adapter to AWS: boto3 clients created once per process, and what every caller asks of their errors,
numbers and times.

boto3 honours ``AWS_ENDPOINT_URL`` itself, which is how the local stack points every function at moto.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from decimal import Decimal
from functools import lru_cache
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.exceptions import HTTPClientError

# 32 pooled connections: the training job fetches 16 images at a time through one client (urllib3's default
# pool of 10 discarded the rest after every call).
_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=32)

# S3 answers a missing object as NoSuchKey (GET), a bare 404 (HEAD) or NotFound; a missing version as NoSuchVersion.
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchVersion", "NotFound", "404", "ResourceNotFoundException"})
# A conditional write whose condition did not hold: DynamoDB's, and S3's If-Match/If-None-Match.
_CONDITION_FAILED_CODES = frozenset(
    {"ConditionalCheckFailedException", "PreconditionFailed", "412", "ConditionalRequestConflict"}
)
_TRANSACTION_LOST_CODES = frozenset({"TransactionCanceledException", "TransactionConflictException"})
_RETRYABLE_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "SlowDown",
        "ServiceUnavailable",
        "InternalError",
        "InternalServerError",
        "InternalFailure",
        "RequestTimeout",
        "RequestTimeoutException",
        "TransactionConflictException",
    }
)


@lru_cache(maxsize=None)
def client(service: str) -> Any:
    return boto3.session.Session().client(service, config=_CONFIG)


@lru_cache(maxsize=None)
def presigning_client(service: str) -> Any:
    """A client that signs URLs for others to call: SigV4 (S3 refuses SigV2 in newer regions) and, for S3,
    virtual-hosted addresses on the bucket's regional endpoint (the global one redirects new buckets outside
    us-east-1, which a browser's CORS preflight does not follow). ``AWS_ENDPOINT_URL`` still wins (moto)."""
    config = _CONFIG.merge(Config(signature_version="s3v4", s3={"addressing_style": "virtual"}))
    return boto3.session.Session().client(service, config=config)


_per_thread = threading.local()


def table(name: str) -> Any:
    """The DynamoDB table ``name``; one resource per thread, since boto3 resources (unlike clients) are not
    thread-safe and registration works on several objects at once. A thread's resources go with the thread."""
    tables = getattr(_per_thread, "tables", None)
    if tables is None:
        tables = _per_thread.tables = {}
    if name not in tables:
        tables[name] = boto3.session.Session().resource("dynamodb", config=_CONFIG).Table(name)
    return tables[name]


def _forget_tables() -> None:
    _per_thread.tables = {}


table.cache_clear = _forget_tables  # type: ignore[attr-defined]


def reset() -> None:
    """Forget cached clients and this thread's tables (tests that switch endpoints or credentials call this)."""
    client.cache_clear()
    presigning_client.cache_clear()
    _forget_tables()


# ---------------------------------------------------------------- errors


def error_code(error: BaseException) -> str:
    """The AWS error code of a ``ClientError`` ("" for anything else)."""
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", ""))
    return ""


def error_message(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Message", ""))


def is_not_found(error: BaseException) -> bool:
    """The object, version or resource the call named does not exist."""
    return error_code(error) in _NOT_FOUND_CODES


def is_condition_failed(error: BaseException) -> bool:
    """A conditional write (DynamoDB condition, S3 If-Match/If-None-Match) found its condition false."""
    return error_code(error) in _CONDITION_FAILED_CODES


def is_transaction_lost(error: BaseException) -> bool:
    """A DynamoDB transaction was cancelled (a condition failed) or raced another one."""
    return error_code(error) in _TRANSACTION_LOST_CODES


def is_retryable(error: BaseException) -> bool:
    """Throttling, timeouts and server errors: trying again later may succeed. Bad data never is."""
    if isinstance(error, ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return error_code(error) in _RETRYABLE_CODES or status == 429 or status >= 500
    return isinstance(error, (BotoConnectionError, HTTPClientError))


# ---------------------------------------------------------------- DynamoDB values


def delete_prefixes(bucket: str, prefixes: list[str]) -> None:
    """Delete every object under each of ``prefixes`` in ``bucket`` (a listing page is at most 1,000 keys, which
    is also ``DeleteObjects``' limit)."""
    s3 = client("s3")
    for prefix in prefixes:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            found = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
            if found:
                s3.delete_objects(Bucket=bucket, Delete={"Objects": found, "Quiet": True})


def query_items(table: Any, **query: Any) -> Iterator[dict[str, Any]]:
    """Every item a DynamoDB query matches, across its pages."""
    while True:
        page = table.query(**query)
        yield from page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return
        query = {**query, "ExclusiveStartKey": page["LastEvaluatedKey"]}


def to_dynamo(value: Any) -> Any:
    """DynamoDB wants Decimal, not float."""
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {k: to_dynamo(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_dynamo(v) for v in value]
    return value


def from_dynamo(value: Any) -> Any:
    """Plain JSON types back: whole Decimals become int, others float; sets become lists."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: from_dynamo(v) for k, v in value.items()}
    if isinstance(value, (list, set, tuple)):
        return [from_dynamo(v) for v in value]
    return value


# ---------------------------------------------------------------- time


def utc_now() -> str:
    """The time stamp of every stored record: ISO 8601 UTC with microseconds, so it also sorts writes."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
