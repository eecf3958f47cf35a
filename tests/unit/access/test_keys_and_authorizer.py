"""Scoped keys in the table (hashed, shown once, revoked) and the authorizer that reads them (moto)."""
from __future__ import annotations

import boto3
import pytest

from sightline import access, api_keys, authorizer, usage_plans
from sightline.errors import BadRequest, NotFound

BOOTSTRAP = "bootstrap-key-0123456789abcdef"


@pytest.fixture
def plan(aws_resources):
    usage_plans.forget()
    gateway = boto3.client("apigateway", region_name="us-east-1")
    api_id = gateway.create_rest_api(name="sightline")["id"]
    plan_id = gateway.create_usage_plan(name="plan", apiStages=[{"apiId": api_id, "stage": "prod"}])["id"]
    key = gateway.create_api_key(name="sightline-SightlineApiApiKey", enabled=True, value=BOOTSTRAP)
    gateway.create_usage_plan_key(usagePlanId=plan_id, keyId=key["id"], keyType="API_KEY")
    yield {"api_id": api_id, "plan_id": plan_id, "gateway": gateway,
           "arn": f"arn:aws:execute-api:us-east-1:123456789012:{api_id}/prod/"}
    usage_plans.forget()


def event(key, method_arn):
    return {"type": "REQUEST", "methodArn": method_arn, "headers": {"X-Api-Key": key} if key else {}}


def test_a_key_is_shown_once_and_stored_only_as_its_hash(plan):
    created = api_keys.create_key("phone app", ["read", "predict"], api_id=plan["api_id"], stage="prod")
    key = created["key"]
    assert key.startswith(f"sl_{created['key_id']}_") and len(key.split("_", 2)[2]) == 43  # 32 random bytes
    assert created["scopes"] == ["predict", "read"] and created["last4"] == key[-4:]
    listed = api_keys.list_keys()
    assert [k["key_id"] for k in listed] == [created["key_id"]] and "key" not in listed[0]
    item = api_keys.find_key(key)
    assert item["key_hash"] == api_keys.key_hash(key) and key not in {str(v) for v in item.values()}
    usage_keys = plan["gateway"].get_usage_plan_keys(usagePlanId=plan["plan_id"])["items"]
    assert {k["name"] for k in usage_keys} == {"sightline-SightlineApiApiKey", f"sightline-scoped-{created['key_id']}"}


def test_bad_requests_name_the_field(plan):
    with pytest.raises(BadRequest) as refused:
        api_keys.create_key("", ["read"], api_id=plan["api_id"], stage="prod")
    assert refused.value.code == "invalid_name"
    with pytest.raises(BadRequest):
        api_keys.create_key("x", ["root"], api_id=plan["api_id"], stage="prod")
    with pytest.raises(NotFound):
        api_keys.revoke_key("0123456789abcdef")


def test_the_authorizer_allows_a_keys_scopes_and_refuses_it_once_revoked(plan):
    created = api_keys.create_key("predictor", ["predict"], api_id=plan["api_id"], stage="prod")
    answer = authorizer.authorize(event(created["key"], plan["arn"] + "POST/v1/predict"))
    resources = answer["policyDocument"]["Statement"][0]["Resource"]
    assert resources == [plan["arn"] + "POST/v1/models/*/predict", plan["arn"] + "POST/v1/predict"]
    assert answer["context"] == {"key_id": created["key_id"], "scopes": "predict"}
    assert answer["usageIdentifierKey"] != created["key"]  # its own usage key, never the secret

    revoked = api_keys.revoke_key(created["key_id"])
    assert revoked["revoked_at"] and api_keys.revoke_key(created["key_id"])["revoked_at"] == revoked["revoked_at"]
    with pytest.raises(authorizer.Unauthorized, match="^Unauthorized$"):
        authorizer.authorize(event(created["key"], plan["arn"] + "POST/v1/predict"))
    names = {k["name"] for k in plan["gateway"].get_usage_plan_keys(usagePlanId=plan["plan_id"])["items"]}
    assert names == {"sightline-SightlineApiApiKey"}


def test_the_stacks_own_key_is_an_admin_key_and_anything_else_is_unauthorized(plan):
    answer = authorizer.authorize(event(BOOTSTRAP, plan["arn"] + "GET/v1/keys"))
    assert len(answer["policyDocument"]["Statement"][0]["Resource"]) == len(access.ROUTE_SCOPES)
    assert answer["usageIdentifierKey"] == BOOTSTRAP and answer["context"]["scopes"] == "admin"
    created = api_keys.create_key("x", ["read"], api_id=plan["api_id"], stage="prod")
    forged = created["key"][:-4] + ("AAAA" if not created["key"].endswith("AAAA") else "BBBB")
    for key in (None, "", "wrong-key-0123456789", forged):
        with pytest.raises(authorizer.Unauthorized):
            authorizer.authorize(event(key, plan["arn"] + "GET/v1/models"))
