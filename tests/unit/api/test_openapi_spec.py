"""docs/openapi.yaml is a valid OpenAPI 3.0 document that describes exactly what the API serves."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from openapi_spec_validator import validate

from sightline import api

REPO = Path(__file__).resolve().parents[3]
# Served by the predict function, not sightline.api.
PREDICT = {("POST", "/v1/models/{}/predict"), ("POST", "/v1/predict")}
# Answered by API Gateway itself (a MOCK integration in template.yaml).
MOCK = {("GET", "/v1/health")}


@pytest.fixture(scope="module")
def spec() -> dict:
    return yaml.safe_load((REPO / "docs" / "openapi.yaml").read_text())


def normalised(path: str) -> str:
    """Path parameters by position only: the resolver says <model_id> where the spec says {id}."""
    return re.sub(r"\{[^}]+\}", "{}", re.sub(r"<[^>]+>", "{}", path))


def spec_operations(spec: dict) -> set[tuple[str, str]]:
    methods = {"get", "put", "post", "delete", "patch", "head", "options"}
    return {
        (method.upper(), normalised(path))
        for path, item in spec["paths"].items()
        for method in item
        if method in methods
    }


def test_the_spec_is_valid_openapi(spec):
    validate(spec)
    assert spec["openapi"] == "3.0.3"


def test_every_served_route_is_in_the_spec_and_nothing_else(spec):
    served = {(method, normalised(path)) for method, path in api.ROUTES}
    assert served <= spec_operations(spec), served - spec_operations(spec)
    assert spec_operations(spec) - served == PREDICT | MOCK


def test_every_route_but_health_needs_the_api_key(spec):
    scheme = spec["components"]["securitySchemes"]["ApiKey"]
    assert scheme == {"type": "apiKey", "in": "header", "name": "x-api-key"}
    assert spec["security"] == [{"ApiKey": []}]
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            expected = [] if path == "/v1/health" else [{"ApiKey": []}]
            assert operation.get("security", spec["security"]) == expected, (method, path)


def test_errors_share_one_schema(spec):
    error = spec["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    body = error["properties"]["error"]
    assert body == {"$ref": "#/components/schemas/ErrorBody"}  # also the per-image and per-model errors
    assert spec["components"]["schemas"]["ErrorBody"]["required"] == ["code", "message"]
    predict = spec["paths"]["/v1/models/{id}/predict"]["post"]
    assert {"400", "403", "404", "409", "413", "415"} <= set(predict["responses"])
