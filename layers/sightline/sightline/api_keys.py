"""Scoped API keys: made here, shown once, kept only as a SHA-256 hash with their name and scopes.

A key reads ``sl_<id>_<secret>``: the id finds its item, the secret (32 random bytes) is what makes it a key.
SHA-256 without a salt is enough for a secret of 256 random bits: no dictionary holds it.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from sightline import access, aws, keys, usage_plans
from sightline.config import get_settings
from sightline.errors import BadRequest, NotFound

PREFIX = "sl"
MAX_NAME_CHARS = 64
_KEY = re.compile(r"^sl_(?P<id>[0-9a-f]{16})_(?P<secret>[A-Za-z0-9_-]{43})$")
_KEY_ID = re.compile(r"^[0-9a-f]{16}$")
PUBLIC_FIELDS = ("key_id", "name", "scopes", "last4", "created_at", "revoked_at")


def _table() -> Any:
    return aws.table(get_settings().table_name)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """(id, key) of a fresh key."""
    key_id = secrets.token_hex(8)
    return key_id, f"{PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"


def create_key(name: Any, scopes: Any, *, api_id: str, stage: str) -> dict[str, Any]:
    """A new key of ``scopes``; the answer carries ``key``, which nobody can read again."""
    name = _name(name)
    scopes = access.parse_scopes(scopes)
    key_id, key = new_key()
    plan, usage_key_id, usage_key_value = usage_plans.create_usage_key(api_id, stage, key_id)
    now = aws.utc_now()
    item = {
        "pk": keys.api_key_pk(key_id), "sk": keys.META, "gsi1pk": keys.API_KEYS_INDEX_PK, "gsi1sk": f"{now}#{key_id}",
        "key_id": key_id, "name": name, "scopes": scopes, "key_hash": key_hash(key), "last4": key[-4:],
        "created_at": now, "usage_plan_id": plan, "usage_key_id": usage_key_id, "usage_key_value": usage_key_value,
    }
    try:
        _table().put_item(Item=item, ConditionExpression="attribute_not_exists(pk)")
    except Exception:
        usage_plans.delete_usage_key(plan, usage_key_id)
        raise
    return {**_public(item), "key": key}


def list_keys() -> list[dict[str, Any]]:
    """Every key, newest first, revoked ones included; never a hash or a key."""
    items = aws.query_items(_table(), IndexName=keys.GSI1,
                            KeyConditionExpression=Key("gsi1pk").eq(keys.API_KEYS_INDEX_PK), ScanIndexForward=False)
    return [_public(item) for item in items]


def revoke_key(key_id: str) -> dict[str, Any]:
    """Mark the key revoked and delete its usage key; revoking twice answers the first revocation."""
    if not _KEY_ID.fullmatch(key_id):
        raise NotFound(f"no API key {key_id[:40]!r}", code="key_not_found")
    table = _table()
    key = {"pk": keys.api_key_pk(key_id), "sk": keys.META}
    try:
        item = table.update_item(
            Key=key, UpdateExpression="SET revoked_at = :now",
            ConditionExpression="attribute_exists(pk) AND attribute_not_exists(revoked_at)",
            ExpressionAttributeValues={":now": aws.utc_now()}, ReturnValues="ALL_NEW",
        )["Attributes"]
    except ClientError as error:
        if not aws.is_condition_failed(error):
            raise
        existing = table.get_item(Key=key, ConsistentRead=True).get("Item")
        if existing is None:
            raise NotFound(f"no API key {key_id!r}", code="key_not_found") from None
        return _public(existing)  # revoked before: its usage key is already gone
    usage_plans.delete_usage_key(item["usage_plan_id"], item["usage_key_id"])
    return _public(item)


def find_key(key: str) -> dict[str, Any] | None:
    """The live (not revoked) record of a presented key, or None."""
    match = _KEY.fullmatch(key)
    if match is None:
        return None
    # Strongly consistent: a key works as soon as POST /v1/keys answered, and a revocation is read at once (the
    # authorizer's answer is cached per key, so this read is rare).
    item = _table().get_item(Key={"pk": keys.api_key_pk(match.group("id")), "sk": keys.META},
                             ConsistentRead=True).get("Item")
    if item is None or item.get("revoked_at") or not hmac.compare_digest(item["key_hash"], key_hash(key)):
        return None
    return item


def looks_like_scoped_key(key: str) -> bool:
    return _KEY.fullmatch(key) is not None


def _name(name: Any) -> str:
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= MAX_NAME_CHARS \
            or any(not character.isprintable() for character in name):
        raise BadRequest(f"name must be 1 to {MAX_NAME_CHARS} printable characters", code="invalid_name")
    return name.strip()


def _public(item: dict[str, Any]) -> dict[str, Any]:
    return {field: aws.from_dynamo(item.get(field)) for field in PUBLIC_FIELDS}
