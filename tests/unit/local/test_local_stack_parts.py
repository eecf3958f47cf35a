"""The local stack's own parts: template expansion, intrinsic functions, routing and the API front."""
from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from sightline_local.apigateway import ApiFront, routes_from_openapi
from sightline_local.deploy import IntrinsicResolver, Physical, dependencies
from sightline_local.lambda_runtime import InvocationResult
from sightline_local.stack import training_command
from sightline_local.template import load_template

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def expanded():
    return load_template(ROOT / "template.yaml", {"VpcId": "vpc-1", "SubnetIds": "subnet-1"}, "deployments")


def test_every_function_and_layer_is_packaged_from_its_folder(expanded):
    functions = {k: r for k, r in expanded.resources.items() if r["Type"] == "AWS::Lambda::Function"}
    assert len(functions) == 7
    for resource in functions.values():
        key = resource["Properties"]["Code"]["S3Key"]
        folder = expanded.code_dirs[key]
        assert (folder / resource["Properties"]["Handler"].split(".")[0]).with_suffix(".py").exists()
    layers = [r for r in expanded.resources.values() if r["Type"] == "AWS::Lambda::LayerVersion"]
    assert expanded.code_dirs[layers[0]["Properties"]["Content"]["S3Key"]].name == "sightline"


def test_routes_come_from_the_expanded_api(expanded):
    api = next(r for r in expanded.resources.values() if r["Type"] == "AWS::ApiGateway::RestApi")
    resolver = IntrinsicResolver("s", "us-east-1", {}, {
        "ApiFunction": Physical("api", {"Arn": "arn:aws:lambda:us-east-1:1:function:api"}),
        "PredictFunction": Physical("predict", {"Arn": "arn:aws:lambda:us-east-1:1:function:predict"}),
    })
    routes = routes_from_openapi(resolver.resolve(api["Properties"]["Body"]))
    table = {(r.method, r.template): (r.function_arn.rsplit(":", 1)[-1], r.api_key_required) for r in routes}
    assert table[("GET", "/v1/health")] == ("api", False)
    assert table[("POST", "/v1/models/{id}/predict")] == ("predict", True)
    assert table[("GET", "/v1/models/{id}/versions/{version}")] == ("api", True)
    assert table[("POST", "/v1/models/{id}/versions")] == ("api", True)
    assert len(table) == 11


def test_intrinsics_resolve_like_cloudformation():
    resources = {"Fn": Physical("my-fn", {"Arn": "arn:fn"}), "Table": Physical("tbl")}
    resolver = IntrinsicResolver("stack", "eu-west-1", {"Stage": "prod"}, resources)
    assert resolver.resolve({"Fn::Sub": "${AWS::StackName}-${Stage}-${Fn.Arn}"}) == "stack-prod-arn:fn"
    assert resolver.resolve({"Fn::Sub": ["${x}/${Table}", {"x": {"Ref": "AWS::Region"}}]}) == "eu-west-1/tbl"
    assert resolver.resolve({"Fn::Join": [",", [{"Ref": "Table"}, "b"]]}) == "tbl,b"
    assert resolver.resolve({"Fn::Select": [1, {"Fn::Split": [",", "a,b,c"]}]}) == "b"
    assert resolver.resolve({"Fn::Sub": "${!Literal}"}) == "${Literal}"
    assert dependencies({"A": {"Fn::Sub": "${Fn.Arn}/${Table}"}, "B": [{"Ref": "Other"}]}) == {"Fn", "Table", "Other"}


def test_training_command_is_the_dockerfile_entrypoint(tmp_path):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text('FROM x\nENTRYPOINT ["python", "-m", "trainer"]\nCMD ["--verbose"]\n')
    command = training_command(dockerfile)
    assert command[1:] == ["-m", "trainer", "--verbose"]
    assert Path(command[0]).name.startswith("python")
    assert training_command(ROOT / "training" / "Dockerfile")[1:3] == ["-m", "sightline_training"]


class FakeRuntime:
    def __init__(self):
        self.events = []

    def invoke(self, name, event):
        self.events.append((name, event))
        return InvocationResult({"statusCode": 201, "headers": {"content-type": "application/json"}, "body": '{"ok": true}'})


@pytest.fixture
def front():
    body = {
        "paths": {
            "/v1/health": {"get": {"x-amazon-apigateway-integration": {"uri": "arn:aws:apigateway:r:lambda:path/2015-03-31/functions/arn:aws:lambda:r:1:function:api/invocations"}}},
            "/v1/models/{id}/predict": {"post": {"security": [{"api_key": []}], "x-amazon-apigateway-integration": {"uri": "arn:aws:apigateway:r:lambda:path/2015-03-31/functions/arn:aws:lambda:r:1:function:predict/invocations"}}},
        },
        "x-amazon-apigateway-binary-media-types": ["image~1png"],
        "x-amazon-apigateway-gateway-responses": {
            "INVALID_API_KEY": {"statusCode": "403", "responseTemplates": {"application/json": '{"error": {"code": "forbidden"}}'}}
        },
    }
    runtime = FakeRuntime()
    return ApiFront(body, runtime, lambda: {"k"}, "prod"), runtime


def test_front_enforces_the_api_key(front):
    api, runtime = front
    status, _, data = api.handle("POST", "/v1/models/m1/predict", {}, b"", "127.0.0.1")
    assert status == 403 and json.loads(data)["error"]["code"] == "forbidden"
    assert runtime.events == []
    assert api.handle("GET", "/v1/health", {}, b"", "127.0.0.1")[0] == 201


def test_front_builds_rest_proxy_events_with_binary_bodies(front):
    api, runtime = front
    status, headers, data = api.handle("POST", "/v1/models/m1/predict?threshold=0.3", {"x-api-key": "k", "Content-Type": "image/png"}, b"\x89PNG", "127.0.0.1")
    assert status == 201 and json.loads(data) == {"ok": True}
    name, event = runtime.events[-1]
    assert name.endswith(":predict")
    assert event["pathParameters"] == {"id": "m1"}
    assert event["queryStringParameters"] == {"threshold": "0.3"}
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == b"\x89PNG"
    assert event["resource"] == "/v1/models/{id}/predict" and event["requestContext"]["stage"] == "prod"


def test_front_rejects_unknown_routes_and_huge_bodies(front):
    api, _ = front
    assert api.handle("GET", "/v1/nothing", {}, b"", "127.0.0.1")[0] == 403
    assert api.handle("DELETE", "/v1/health", {}, b"", "127.0.0.1")[0] == 403
    assert api.handle("POST", "/v1/models/m/predict", {"x-api-key": "k"}, b"x" * (10 * 1024 * 1024 + 1), "127.0.0.1")[0] == 413


def test_cli_refuses_a_busy_port_with_a_clear_message(capsys):
    import socket

    from sightline_local.cli import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["local", "up", "--no-demo", "--aws-port", str(port)]) == 2
    assert f"127.0.0.1:{port} is in use" in capsys.readouterr().err
