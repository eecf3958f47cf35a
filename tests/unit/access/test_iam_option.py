"""ApiAuthorizer=AWS_IAM switches every route but health to SigV4, with the usage plan key from the header."""
from __future__ import annotations

from pathlib import Path

import pytest

from sightline_local.apigateway import routes_from_openapi
from sightline_local.deploy import IntrinsicResolver, Physical
from sightline_local.template import load_template

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(("choice", "source"), [("KeyAuthorizer", "AUTHORIZER"), ("AWS_IAM", "HEADER")])
def test_the_parameter_chooses_the_authorization_of_every_route(choice, source):
    parameters = {"VpcId": "vpc-1", "SubnetIds": "subnet-1", "ApiAuthorizer": choice}
    expanded = load_template(ROOT / "template.yaml", parameters, "deployments")
    api = next(r for r in expanded.resources.values() if r["Type"] == "AWS::ApiGateway::RestApi")
    functions = {name: Physical(name, {"Arn": f"arn:aws:lambda:us-east-1:1:function:{name}"})
                 for name in ("ApiFunction", "PredictFunction", "AuthorizerFunction")}
    body = IntrinsicResolver("s", "us-east-1", parameters, functions, expanded.conditions).resolve(
        api["Properties"]["Body"])
    assert body["x-amazon-apigateway-api-key-source"] == source
    for route in routes_from_openapi(body):
        if route.template == "/v1/health":
            assert (route.iam, route.authorizer, route.api_key_required) == (False, None, False)
        else:
            assert route.iam is (choice == "AWS_IAM") and route.api_key_required
            assert route.authorizer == (None if choice == "AWS_IAM" else "KeyAuthorizer")
