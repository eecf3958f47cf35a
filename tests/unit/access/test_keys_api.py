"""POST/GET /v1/keys and DELETE /v1/keys/{id} through the API's resolver (moto)."""
from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from sightline import usage_plans
from support import load_module

request = load_module(Path(__file__).resolve().parents[1] / "api" / "api_helpers.py").request

API_ID = "abc123defg"  # the event fixtures' requestContext.apiId


@pytest.fixture
def plan(aws_resources):
    usage_plans.forget()
    gateway = boto3.client("apigateway", region_name="us-east-1")
    plan_id = gateway.create_usage_plan(name="plan", apiStages=[{"apiId": API_ID, "stage": "prod"}])["id"]
    yield SimpleGateway(gateway, plan_id)
    usage_plans.forget()


class SimpleGateway:
    def __init__(self, client, plan_id):
        self.client, self.plan_id = client, plan_id

    def usage_key_names(self) -> set[str]:
        return {key["name"] for key in self.client.get_usage_plan_keys(usagePlanId=self.plan_id)["items"]}


def post_key(body):
    return request("apigw_get_models.json", method="POST", path="/v1/keys", body=body)


def test_a_key_is_created_listed_and_revoked(plan):
    created = post_key({"name": "camera", "scopes": ["predict"]})
    assert created.status == 201 and created.headers["location"] == f"/v1/keys/{created.json['key_id']}"
    assert created.json["key"].startswith("sl_") and created.json["revoked_at"] is None
    assert plan.usage_key_names() == {f"sightline-scoped-{created.json['key_id']}"}

    listed = request("apigw_get_models.json", path="/v1/keys").json["keys"]
    assert [k["key_id"] for k in listed] == [created.json["key_id"]] and "key" not in listed[0]
    assert "key_hash" not in listed[0] and "usage_key_value" not in listed[0]

    revoked = request("apigw_get_models.json", method="DELETE", path=f"/v1/keys/{created.json['key_id']}")
    assert revoked.status == 200 and revoked.json["revoked_at"]
    assert plan.usage_key_names() == set()
    again = request("apigw_get_models.json", method="DELETE", path=f"/v1/keys/{created.json['key_id']}")
    assert again.status == 200 and again.json["revoked_at"] == revoked.json["revoked_at"]


@pytest.mark.parametrize(("body", "code"), [
    ({"name": "x"}, "invalid_scopes"),
    ({"name": "x", "scopes": ["everything"]}, "invalid_scopes"),
    ({"scopes": ["read"]}, "invalid_name"),
    ({"name": "x", "scopes": ["read"], "expires": 3}, "unknown_field"),
])
def test_bad_requests_are_400s_naming_the_field(plan, body, code):
    answer = post_key(body)
    assert (answer.status, answer.json["error"]["code"]) == (400, code)
    assert plan.usage_key_names() == set()


def test_an_unknown_key_is_a_404(plan):
    for key_id in ("0123456789abcdef", "not-an-id"):
        answer = request("apigw_get_models.json", method="DELETE", path=f"/v1/keys/{key_id}")
        assert (answer.status, answer.json["error"]["code"]) == (404, "key_not_found")
