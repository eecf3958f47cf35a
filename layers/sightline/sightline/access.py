"""Who may call what: the four scopes, the one table mapping every route to a scope, and the IAM policy an
authorized key gets.

The policy lists every route the key's scopes allow (not only the route asked for): API Gateway caches the
authorizer's answer per key and applies it to the key's next requests on any route.
"""
from __future__ import annotations

import re

from sightline.errors import BadRequest

PREDICT = "predict"
READ = "read"
TRAIN = "train"
ADMIN = "admin"
SCOPES = (PREDICT, READ, TRAIN, ADMIN)

# Every route of the API (API Gateway's path syntax, as in template.yaml) and the scope that allows it. admin
# allows every route. tests/unit/access checks that this covers each route served, and nothing else.
ROUTE_SCOPES: dict[tuple[str, str], str] = {
    ("POST", "/v1/models/{id}/predict"): PREDICT,
    ("POST", "/v1/predict"): PREDICT,
    ("GET", "/v1/templates"): READ,
    ("GET", "/v1/datasets"): READ,
    ("GET", "/v1/datasets/{name}"): READ,
    ("GET", "/v1/datasets/{name}/issues"): READ,
    ("GET", "/v1/datasets/{name}/images"): READ,
    ("GET", "/v1/datasets/{name}/versions"): READ,
    ("GET", "/v1/models"): READ,
    ("GET", "/v1/models/{id}"): READ,
    ("GET", "/v1/models/{id}/versions"): READ,
    ("GET", "/v1/models/{id}/versions/{version}"): READ,
    ("GET", "/v1/models/{id}/versions/{version}/artifacts"): READ,
    ("GET", "/v1/evaluations/compare"): READ,
    ("GET", "/v1/evaluations/{id}"): READ,
    ("GET", "/v1/batch-predictions/{id}"): READ,
    ("POST", "/v1/datasets/{name}/uploads/status"): READ,  # a read: the body holds up to 1,000 paths
    ("POST", "/v1/datasets/{name}/uploads"): TRAIN,
    ("POST", "/v1/datasets/{name}/uploads/complete"): TRAIN,
    ("POST", "/v1/datasets/{name}/uploads/abort"): TRAIN,
    ("POST", "/v1/datasets/{name}/images"): TRAIN,
    ("POST", "/v1/models"): TRAIN,
    ("PATCH", "/v1/models/{id}"): TRAIN,
    ("POST", "/v1/models/{id}/versions"): TRAIN,
    ("POST", "/v1/models/{id}/versions/{version}/evaluations"): TRAIN,
    ("POST", "/v1/models/{id}/versions/{version}/cancel"): TRAIN,
    ("POST", "/v1/models/{id}/versions/{version}/promote"): TRAIN,
    ("POST", "/v1/models/{id}/batch-predictions"): TRAIN,
    ("DELETE", "/v1/datasets/{name}"): ADMIN,
    ("DELETE", "/v1/models/{id}"): ADMIN,
    ("DELETE", "/v1/models/{id}/versions/{version}"): ADMIN,
    ("POST", "/v1/keys"): ADMIN,
    ("GET", "/v1/keys"): ADMIN,
    ("DELETE", "/v1/keys/{id}"): ADMIN,
}
# Answered by API Gateway itself (a MOCK integration): no key, no authorizer.
OPEN_ROUTES = {("GET", "/v1/health")}

_METHOD_ARN = re.compile(r"^arn:(?P<partition>[^:]+):execute-api:(?P<region>[^:]+):(?P<account>[^:]+):"
                         r"(?P<api_id>[^/]+)/(?P<stage>[^/]+)/")


def parse_scopes(raw: object) -> list[str]:
    """The scopes asked for, checked and in the order of ``SCOPES``; a 400 names what is wrong."""
    if not isinstance(raw, list) or not raw or not all(isinstance(scope, str) for scope in raw):
        raise BadRequest(f"scopes must be a non-empty list of {', '.join(SCOPES)}", code="invalid_scopes")
    unknown = sorted(set(raw) - set(SCOPES))
    if unknown:
        raise BadRequest(f"unknown scopes: {', '.join(unknown)} (known: {', '.join(SCOPES)})", code="invalid_scopes")
    return [scope for scope in SCOPES if scope in raw]


def allowed_routes(scopes: list[str]) -> list[tuple[str, str]]:
    """The routes a key with these scopes may call."""
    if ADMIN in scopes:
        return sorted(ROUTE_SCOPES)
    return sorted(route for route, scope in ROUTE_SCOPES.items() if scope in scopes)


def route_arn_prefix(method_arn: str) -> str:
    """``arn:aws:execute-api:<region>:<account>:<api id>/<stage>/`` of a request's method ARN."""
    match = _METHOD_ARN.match(method_arn)
    if match is None:
        raise ValueError(f"not an execute-api method ARN: {method_arn!r}")
    return match.group(0)


def api_of(method_arn: str) -> tuple[str, str]:
    """(API id, stage) of a request's method ARN."""
    match = _METHOD_ARN.match(method_arn)
    if match is None:
        raise ValueError(f"not an execute-api method ARN: {method_arn!r}")
    return match.group("api_id"), match.group("stage")


def route_resource(prefix: str, method: str, path: str) -> str:
    # A path parameter is one segment; IAM's * also crosses "/", which the scope table's test accounts for.
    return prefix + method + re.sub(r"\{[^}]+\}", "*", path)


def policy(principal_id: str, method_arn: str, scopes: list[str], context: dict[str, str],
           usage_key: str | None) -> dict:
    """The authorizer's answer: allow exactly the routes of ``scopes``; a key allowed nothing is denied all."""
    prefix = route_arn_prefix(method_arn)
    resources = [route_resource(prefix, method, path) for method, path in allowed_routes(scopes)]
    statement = ({"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": resources} if resources
                 else {"Action": "execute-api:Invoke", "Effect": "Deny", "Resource": prefix + "*"})
    answer = {
        "principalId": principal_id,
        "policyDocument": {"Version": "2012-10-17", "Statement": [statement]},
        "context": context,
    }
    if usage_key:
        answer["usageIdentifierKey"] = usage_key  # the usage plan key its throttle and quota count against
    return answer
