"""The local API front runs authorizers, MOCK integrations and throttles as API Gateway does."""
from __future__ import annotations

import json

from sightline_local.apigateway import ApiFront
from sightline_local.lambda_runtime import InvocationResult

FUNCTION = "arn:aws:apigateway:r:lambda:path/2015-03-31/functions/arn:aws:lambda:r:1:function:{}/invocations"
BODY = {
    "x-amazon-apigateway-api-key-source": "AUTHORIZER",
    "paths": {
        "/v1/health": {"get": {"security": [], "x-amazon-apigateway-integration": {
            "type": "mock", "responses": {"default": {"statusCode": "200",
                                                      "responseTemplates": {"application/json": '{"status": "ok"}'}}}}}},
        "/v1/models": {"post": {"security": [{"Keys": []}, {"api_key": []}],
                                "x-amazon-apigateway-integration": {"type": "aws_proxy", "uri": FUNCTION.format("api")}},
                       "get": {"security": [{"Keys": []}, {"api_key": []}],
                               "x-amazon-apigateway-integration": {"type": "aws_proxy", "uri": FUNCTION.format("api")}}},
    },
    "components": {"securitySchemes": {"Keys": {"x-amazon-apigateway-authorizer": {
        "type": "request", "identitySource": "method.request.header.x-api-key", "authorizerResultTtlInSeconds": 10,
        "authorizerUri": FUNCTION.format("auth")}}}},
    "x-amazon-apigateway-gateway-responses": {
        "ACCESS_DENIED": {"statusCode": "403", "responseTemplates": {"application/json": '{"error": {"code": "scope_forbidden"}}'}},
        "UNAUTHORIZED": {"statusCode": "403", "responseTemplates": {"application/json": '{"error": {"code": "forbidden"}}'}},
    },
}


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


class Runtime:
    """The authorizer lets "good" GET only, and "admin" everything; the function answers 200."""

    def __init__(self):
        self.calls = []
        self.revoked = set()

    def invoke(self, name, event):
        self.calls.append((name.rsplit(":", 1)[-1], event))
        if name.endswith(":auth"):
            key = event["headers"].get("x-api-key")
            if key not in ("good", "admin") or key in self.revoked:
                return InvocationResult({"errorMessage": "Unauthorized"}, error=True)
            resource = event["methodArn"].split("/", 1)[0] + ("/*/GET/*" if key == "good" else "/*")
            return InvocationResult({"principalId": key, "usageIdentifierKey": f"usage-{key}", "context": {"key_id": key},
                                     "policyDocument": {"Statement": [{"Effect": "Allow", "Action": "execute-api:Invoke",
                                                                        "Resource": resource}]}})
        return InvocationResult({"statusCode": 200, "body": json.dumps(event["requestContext"]["authorizer"])})


def front(method_settings=None, usage_plan=None):
    clock, runtime = Clock(), Runtime()
    api = ApiFront(BODY, runtime, lambda key: key in {"usage-good", "usage-admin"}, "prod", api_id="abc",
                   method_settings=method_settings, usage_plan=usage_plan, clock=clock)
    return api, runtime, clock


def call(api, method, key=None):
    status, _, data = api.handle(method, "/v1/models", {"x-api-key": key} if key else {}, b"", "127.0.0.1")
    return status, json.loads(data)


def test_health_is_answered_by_the_mock_without_any_function():
    api, runtime, _ = front()
    assert api.handle("GET", "/v1/health", {}, b"", "127.0.0.1")[::2] == (200, b'{"status": "ok"}')
    assert runtime.calls == []


def test_the_authorizers_policy_decides_and_its_context_reaches_the_function():
    api, runtime, _ = front()
    status, body = call(api, "GET", "good")
    assert status == 200 and body == {"principalId": "good", "key_id": "good"}
    assert runtime.calls[0][1]["type"] == "REQUEST"
    assert runtime.calls[0][1]["methodArn"] == "arn:aws:execute-api:us-east-1:123456789012:abc/prod/GET/v1/models"
    assert call(api, "POST", "good") == (403, {"error": {"code": "scope_forbidden"}})
    assert call(api, "POST", "bad") == (403, {"error": {"code": "forbidden"}})
    assert call(api, "POST", None) == (403, {"error": {"code": "forbidden"}})
    assert [name for name, _ in runtime.calls] == ["auth", "api", "auth"]  # the missing header invokes nothing


def test_answers_are_cached_per_key_for_the_ttl():
    api, runtime, clock = front()
    assert call(api, "GET", "good")[0] == 200
    runtime.revoked.add("good")
    clock.now += 9
    assert call(api, "GET", "good")[0] == 200  # the cached policy still holds
    clock.now += 2
    assert call(api, "GET", "good")[0] == 403
    assert [name for name, _ in runtime.calls].count("auth") == 2


def test_method_throttles_and_per_key_quotas_answer_429():
    settings = [{"ResourcePath": "/*", "HttpMethod": "*", "ThrottlingRateLimit": 1, "ThrottlingBurstLimit": 100},
                {"ResourcePath": "/~1v1~1models", "HttpMethod": "POST", "ThrottlingRateLimit": 1,
                 "ThrottlingBurstLimit": 2}]
    api, _, clock = front(settings, {"Quota": {"Limit": 5, "Period": "DAY"}})
    assert [call(api, "POST", "admin")[0] for _ in range(3)] == [200, 200, 429]
    clock.now += 1
    assert call(api, "POST", "admin")[0] == 200
    assert [call(api, "GET", "admin")[0] for _ in range(3)] == [200, 200, 429]  # the key's 5 a day are used
    assert call(api, "GET", "good")[0] == 200  # another key has its own quota


def test_iam_routes_refuse_unsigned_requests():
    body = {"paths": {"/v1/models": {"get": {"security": [{"AWS_IAM": []}, {"api_key": []}],
                                             "x-amazon-apigateway-integration": {"uri": FUNCTION.format("api")}}}}}
    runtime = Runtime()
    api = ApiFront(body, runtime, lambda key: key == "usage-good", "prod")
    assert api.handle("GET", "/v1/models", {"x-api-key": "usage-good"}, b"", "127.0.0.1")[0] == 403
    signed = {"x-api-key": "usage-good", "Authorization": "AWS4-HMAC-SHA256 Credential=AKIA/20261201/us-east-1/"
                                                            "execute-api/aws4_request, Signature=00"}
    runtime.invoke = lambda name, event: InvocationResult({"statusCode": 200, "body": "{}"})
    assert api.handle("GET", "/v1/models", signed, b"", "127.0.0.1")[0] == 200
