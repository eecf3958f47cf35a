"""The API's Lambda REQUEST authorizer: the ``x-api-key`` header in, an IAM policy of the key's scopes out.

A scoped key (``sightline.api_keys``) gets the routes of its scopes and counts against its own usage key; the
stack's bootstrap key (the usage plan's own, printed by ``make run``) is an admin key. Anything else is
"Unauthorized", which API Gateway answers with its UNAUTHORIZED gateway response.
"""
from __future__ import annotations

import hmac
from typing import Any

from aws_lambda_powertools import Logger

from sightline import access, api_keys, usage_plans
from sightline.http_events import event_header

logger = Logger(child=True)
BOOTSTRAP_PRINCIPAL = "bootstrap"


class Unauthorized(Exception):
    """API Gateway's contract: raising with exactly this message means 401, not an authorizer failure."""

    def __init__(self) -> None:
        super().__init__("Unauthorized")


def authorize(event: dict[str, Any]) -> dict[str, Any]:
    key = event_header(event, "x-api-key") or ""
    method_arn = event["methodArn"]
    if api_keys.looks_like_scoped_key(key):
        record = api_keys.find_key(key)
        if record is None:
            logger.info("unknown or revoked key")
            raise Unauthorized()
        scopes = list(record["scopes"])
        context = {"key_id": record["key_id"], "scopes": " ".join(scopes)}
        return access.policy(record["key_id"], method_arn, scopes, context, record["usage_key_value"])
    api_id, stage = access.api_of(method_arn)
    if key and any(hmac.compare_digest(key, value) for value in usage_plans.bootstrap_keys(api_id, stage)):
        context = {"key_id": BOOTSTRAP_PRINCIPAL, "scopes": access.ADMIN}
        return access.policy(BOOTSTRAP_PRINCIPAL, method_arn, [access.ADMIN], context, key)
    logger.info("missing or unknown key")
    raise Unauthorized()
