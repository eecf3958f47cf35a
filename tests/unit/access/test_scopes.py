"""The route -> scope table covers every route served, and a scope's policy allows exactly its routes."""
from __future__ import annotations

import itertools
import re

import pytest

from sightline import access, api
from sightline.errors import BadRequest
from sightline_local.api_authorizer import evaluate

PREFIX = "arn:aws:execute-api:us-east-1:123456789012:abc123/prod/"
PREDICT_ROUTES = {("POST", "/v1/models/{}/predict"), ("POST", "/v1/predict")}


def normalised(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", re.sub(r"<[^>]+>", "{}", path))


def example_arn(method: str, path: str) -> str:
    return PREFIX + method + re.sub(r"\{[^}]+\}", "x1", path)


def test_every_served_route_has_exactly_one_scope():
    served = {(method, normalised(path)) for method, path in api.ROUTES} | PREDICT_ROUTES
    table = {(method, normalised(path)) for method, path in access.ROUTE_SCOPES}
    assert served == table
    assert all(scope in access.SCOPES for scope in access.ROUTE_SCOPES.values())


@pytest.mark.parametrize("scope", access.SCOPES)
def test_a_scopes_policy_allows_its_routes_and_no_other(scope):
    answer = access.policy("k", example_arn("GET", "/v1/models"), [scope], {}, "usage")
    for (method, path), route_scope in access.ROUTE_SCOPES.items():
        allowed = scope == access.ADMIN or route_scope == scope
        assert evaluate(answer["policyDocument"], example_arn(method, path)) is allowed, (scope, method, path)
    assert answer["usageIdentifierKey"] == "usage"


def test_wildcards_of_one_route_never_reach_another_routes_requests():
    # IAM's * also matches "/": an allowed pattern must not cover a route of another scope.
    for (route, scope), (other, other_scope) in itertools.permutations(access.ROUTE_SCOPES.items(), 2):
        if scope != other_scope:
            pattern = access.route_resource(PREFIX, *route)
            assert not evaluate({"Statement": [{"Effect": "Allow", "Action": "execute-api:Invoke",
                                                "Resource": pattern}]}, example_arn(*other)), (route, other)


def test_predict_only_key_may_not_train_or_read():
    document = access.policy("k", example_arn("POST", "/v1/predict"), ["predict"], {}, None)["policyDocument"]
    assert evaluate(document, example_arn("POST", "/v1/models/{id}/predict"))
    assert not evaluate(document, example_arn("POST", "/v1/models"))
    assert not evaluate(document, example_arn("GET", "/v1/datasets/{name}"))


def test_scopes_are_checked():
    assert access.parse_scopes(["read", "predict", "read"]) == ["predict", "read"]
    for bad in ([], "read", ["read", "everything"], [1]):
        with pytest.raises(BadRequest) as refused:
            access.parse_scopes(bad)
        assert refused.value.code == "invalid_scopes"


def test_method_arns_are_parsed():
    assert access.api_of(PREFIX + "GET/v1/models") == ("abc123", "prod")
    with pytest.raises(ValueError):
        access.api_of("arn:aws:lambda:us-east-1:1:function:x")
