"""The stack's API Gateway usage plan: its bootstrap key and the usage keys of scoped API keys.

The plan cannot be named in the functions' environment (it depends on the API, which depends on the functions),
so it is found from the API id and stage of the request, once per warm container.
"""
from __future__ import annotations

import secrets
import time
from functools import lru_cache

from botocore.exceptions import ClientError

from sightline import aws

# Usage keys made for scoped keys are named so; every other key of the plan is a bootstrap (admin) key.
SCOPED_USAGE_KEY_PREFIX = "sightline-scoped-"
BOOTSTRAP_CACHE_SECONDS = 60.0

_bootstrap_cache: dict[str, tuple[float, frozenset[str]]] = {}


@lru_cache(maxsize=8)
def plan_id(api_id: str, stage: str) -> str:
    """The id of the usage plan of ``api_id``'s ``stage``."""
    for page in aws.client("apigateway").get_paginator("get_usage_plans").paginate():
        for plan in page.get("items", []):
            if any(s.get("apiId") == api_id and s.get("stage") == stage for s in plan.get("apiStages", [])):
                return plan["id"]
    raise LookupError(f"no usage plan covers API {api_id} stage {stage}")


def bootstrap_keys(api_id: str, stage: str) -> frozenset[str]:
    """Values of the plan's keys that are not scoped keys' usage keys (the stack's own API key)."""
    now = time.monotonic()
    fetched = _bootstrap_cache.get(f"{api_id}/{stage}")
    if fetched and now - fetched[0] < BOOTSTRAP_CACHE_SECONDS:
        return fetched[1]
    values = frozenset(
        key["value"]
        for page in aws.client("apigateway").get_paginator("get_usage_plan_keys").paginate(
            usagePlanId=plan_id(api_id, stage))
        for key in page.get("items", [])
        if not str(key.get("name", "")).startswith(SCOPED_USAGE_KEY_PREFIX) and key.get("value")
    )
    _bootstrap_cache[f"{api_id}/{stage}"] = (now, values)
    return values


def create_usage_key(api_id: str, stage: str, key_id: str) -> tuple[str, str, str]:
    """(plan id, id, value) of a new usage key of the plan for scoped key ``key_id``: its own throttle and quota.

    Its value is no credential: API Gateway takes the key from the authorizer (API key source AUTHORIZER), never
    from a client's header, so only the authorizer ever presents it.
    """
    client = aws.client("apigateway")
    plan = plan_id(api_id, stage)
    created = client.create_api_key(name=SCOPED_USAGE_KEY_PREFIX + key_id, enabled=True,
                                    value=secrets.token_urlsafe(30))
    try:
        client.create_usage_plan_key(usagePlanId=plan, keyId=created["id"], keyType="API_KEY")
    except Exception:
        client.delete_api_key(apiKey=created["id"])
        raise
    return plan, created["id"], created["value"]


def delete_usage_key(plan: str, usage_key_id: str) -> None:
    """Take the usage key out of the plan and delete it; already gone is done."""
    client = aws.client("apigateway")
    for call, kwargs in ((client.delete_usage_plan_key, {"usagePlanId": plan, "keyId": usage_key_id}),
                         (client.delete_api_key, {"apiKey": usage_key_id})):
        try:
            call(**kwargs)
        except ClientError as error:
            if aws.error_code(error) != "NotFoundException":
                raise


def forget() -> None:
    """Drop what this container remembers (tests)."""
    plan_id.cache_clear()
    _bootstrap_cache.clear()
