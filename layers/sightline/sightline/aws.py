"""boto3 clients and resources, created once per process.

boto3 honours ``AWS_ENDPOINT_URL`` itself, which is how the local stack points every function at moto.
"""
from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import Any

import boto3
from botocore.config import Config

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5})


@lru_cache(maxsize=None)
def client(service: str) -> Any:
    return boto3.session.Session().client(service, config=_CONFIG)


@lru_cache(maxsize=None)
def table(name: str) -> Any:
    return boto3.session.Session().resource("dynamodb", config=_CONFIG).Table(name)


def query_items(table: Any, **query: Any) -> Iterator[dict[str, Any]]:
    """Every item a DynamoDB query matches, across its pages."""
    while True:
        page = table.query(**query)
        yield from page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return
        query = {**query, "ExclusiveStartKey": page["LastEvaluatedKey"]}


def reset() -> None:
    """Forget cached clients (tests that switch endpoints or credentials call this)."""
    client.cache_clear()
    table.cache_clear()
