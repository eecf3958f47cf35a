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
    assert len(functions) == 11
    for resource in functions.values():
        key = resource["Properties"]["Code"]["S3Key"]
        folder = expanded.code_dirs[key]
        assert (folder / resource["Properties"]["Handler"].split(".")[0]).with_suffix(".py").exists()
    layers = [r for r in expanded.resources.values() if r["Type"] == "AWS::Lambda::LayerVersion"]
    assert expanded.code_dirs[layers[0]["Properties"]["Content"]["S3Key"]].name == "sightline"


def api_body(expanded) -> dict:
    """The expanded template's REST API body, resolved as the local deployment resolves it."""
    api = next(r for r in expanded.resources.values() if r["Type"] == "AWS::ApiGateway::RestApi")
    resolver = IntrinsicResolver("s", "us-east-1", {"ApiAuthorizer": "KeyAuthorizer"}, {
        "ApiFunction": Physical("api", {"Arn": "arn:aws:lambda:us-east-1:1:function:api"}),
        "PredictFunction": Physical("predict", {"Arn": "arn:aws:lambda:us-east-1:1:function:predict"}),
        "AuthorizerFunction": Physical("authorizer", {"Arn": "arn:aws:lambda:us-east-1:1:function:authorizer"}),
    }, expanded.conditions)
    return resolver.resolve(api["Properties"]["Body"])


def test_routes_come_from_the_expanded_api(expanded):
    routes = routes_from_openapi(api_body(expanded))
    table = {(r.method, r.template): (r.function_arn.rsplit(":", 1)[-1], r.api_key_required) for r in routes}
    assert table[("GET", "/v1/health")] == ("", False)  # API Gateway's MOCK integration answers
    assert all(r.authorizer == "KeyAuthorizer" for r in routes if r.template != "/v1/health")
    assert table[("POST", "/v1/models/{id}/predict")] == ("predict", True)
    assert table[("GET", "/v1/models/{id}/versions/{version}")] == ("api", True)
    assert table[("POST", "/v1/models/{id}/versions")] == ("api", True)
    assert table[("POST", "/v1/datasets/{name}/uploads/complete")] == ("api", True)
    assert table[("DELETE", "/v1/keys/{id}")] == ("api", True)
    assert table[("POST", "/v1/datasets/{name}/uploads/status")] == ("api", True)
    assert len(table) == 35


def test_intrinsics_resolve_like_cloudformation():
    resources = {"Fn": Physical("my-fn", {"Arn": "arn:fn"}), "Table": Physical("tbl")}
    resolver = IntrinsicResolver("stack", "eu-west-1", {"Stage": "prod"}, resources)
    assert resolver.resolve({"Fn::Sub": "${AWS::StackName}-${Stage}-${Fn.Arn}"}) == "stack-prod-arn:fn"
    assert resolver.resolve({"Fn::Sub": ["${x}/${Table}", {"x": {"Ref": "AWS::Region"}}]}) == "eu-west-1/tbl"
    assert resolver.resolve({"Fn::Join": [",", [{"Ref": "Table"}, "b"]]}) == "tbl,b"
    assert resolver.resolve({"Fn::Select": [1, {"Fn::Split": [",", "a,b,c"]}]}) == "b"
    assert resolver.resolve({"Fn::Sub": "${!Literal}"}) == "${Literal}"
    assert dependencies({"A": {"Fn::Sub": "${Fn.Arn}/${Table}"}, "B": [{"Ref": "Other"}]}) == {"Fn", "Table", "Other"}


def test_conditions_resolve_like_cloudformation():
    conditions = {"HasDigest": {"Fn::Not": [{"Fn::Equals": [{"Ref": "Digest"}, ""]}]},
                  "Both": {"Fn::And": [{"Condition": "HasDigest"}, {"Fn::Equals": ["a", "a"]}]}}
    choice = {"Fn::If": ["Both", {"Fn::Sub": "repo@${Digest}"}, "repo:latest"]}
    assert IntrinsicResolver("s", "us-east-1", {"Digest": "sha256:ab"}, {}, conditions).resolve(choice) == "repo@sha256:ab"
    assert IntrinsicResolver("s", "us-east-1", {"Digest": ""}, {}, conditions).resolve(choice) == "repo:latest"


def test_the_training_image_is_the_recorded_digest_when_there_is_one(expanded):
    image = expanded.resources["TrainingJobDefinition"]["Properties"]["ContainerProperties"]["Image"]
    resources = {"TrainingRepository": Physical("repo", {"RepositoryUri": "1.dkr.ecr/s-training"})}
    digest = "sha256:" + "0" * 64

    def resolved(value: str) -> str:
        parameters = {"TrainingImageTag": "latest", "TrainingImageDigest": value}
        return IntrinsicResolver("s", "us-east-1", parameters, resources, expanded.conditions).resolve(image)

    assert resolved(digest) == f"1.dkr.ecr/s-training@{digest}"
    assert resolved("") == "1.dkr.ecr/s-training:latest"


def test_the_data_buckets_cors_rules_are_applied_to_moto(expanded):
    from moto import mock_aws

    from sightline_local.deploy import Deployer

    # Only the CORS rules are under test: what names other resources or parameters stays out.
    bucket = {k: v for k, v in expanded.resources["DataBucket"]["Properties"].items()
              if k not in ("NotificationConfiguration", "LifecycleConfiguration", "LoggingConfiguration")}
    properties = IntrinsicResolver("s", "us-east-1", {"AllowedUploadOrigins": ["*"]}, {}).resolve(bucket)
    with mock_aws():
        deployer = Deployer(None, "us-east-1", "s", "deployments", {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"})
        name = deployer._bucket("DataBucket", properties).ref
        rules = deployer.client("s3").get_bucket_cors(Bucket=name)["CORSRules"]
    assert rules == [{"ID": "presigned-uploads", "AllowedMethods": ["PUT"], "AllowedOrigins": ["*"],
                      "AllowedHeaders": ["*"], "ExposeHeaders": ["ETag"], "MaxAgeSeconds": 3600}]


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
    return ApiFront(body, runtime, lambda key: key == "k", "prod"), runtime


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


LAMBDA_EVENT_LIMIT = 6_291_456  # bytes of JSON event Lambda accepts in a synchronous invocation


def event_size(event: dict) -> int:
    return len(json.dumps(event).encode())


def assert_payload_too_large(answer: tuple[int, dict[str, str], bytes]) -> None:
    status, _, data = answer
    assert status == 413
    error = json.loads(data)["error"]
    assert error["code"] == "payload_too_large"
    assert "6,291,456" in error["message"] and "10 MB" in error["message"]


def test_an_image_too_large_for_a_lambda_event_never_reaches_the_function(front):
    api, runtime = front
    image = b"\x89PNG" + bytes(5 * 1024 * 1024)  # under API Gateway's 10 MB, over Lambda's 6 MB once base64
    answer = api.handle("POST", "/v1/models/m1/predict", {"x-api-key": "k", "Content-Type": "image/png"}, image, "127.0.0.1")
    assert_payload_too_large(answer)
    assert runtime.events == []


def test_the_lambda_event_limit_is_on_the_serialized_event_and_inclusive(front):
    api, runtime = front
    headers = {"x-api-key": "k", "Content-Type": "application/json"}
    api.handle("POST", "/v1/models/m1/predict", headers, b"x", "127.0.0.1")
    # A text body adds its length to the event: size the body so that the event is exactly at the limit.
    largest_body = LAMBDA_EVENT_LIMIT - event_size(runtime.events[-1][1]) + 1
    assert api.handle("POST", "/v1/models/m1/predict", headers, b"x" * largest_body, "127.0.0.1")[0] == 201
    assert event_size(runtime.events[-1][1]) == LAMBDA_EVENT_LIMIT
    forwarded = len(runtime.events)
    assert_payload_too_large(api.handle("POST", "/v1/models/m1/predict", headers, b"x" * (largest_body + 1), "127.0.0.1"))
    assert len(runtime.events) == forwarded


def test_a_body_over_api_gateways_limit_gets_the_payload_too_large_error(front):
    api, runtime = front
    assert_payload_too_large(api.handle("POST", "/v1/models/m1/predict", {"x-api-key": "k"}, b"x" * (10 * 1024 * 1024 + 1), "127.0.0.1"))
    assert runtime.events == []


class AllowingAuthorizerRuntime(FakeRuntime):
    """The authorizer allows everything and names usage key "k"; functions answer 201."""

    def invoke(self, name, event):
        if name.endswith(":authorizer"):
            return InvocationResult({"principalId": "p", "usageIdentifierKey": "k", "policyDocument": {
                "Statement": [{"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": "*"}]}})
        return super().invoke(name, event)


def test_the_templates_request_too_large_response_answers_an_oversized_event(expanded):
    runtime = AllowingAuthorizerRuntime()
    api = ApiFront(api_body(expanded), runtime, lambda key: key == "k", "prod")
    image = bytes(5 * 1024 * 1024)
    status, _, data = api.handle("POST", "/v1/models/m1/predict", {"x-api-key": "k", "Content-Type": "image/jpeg"}, image, "127.0.0.1")
    assert status == 413 and json.loads(data)["error"]["code"] == "payload_too_large"
    assert runtime.events == []


def test_cli_refuses_a_busy_port_with_a_clear_message(capsys):
    import socket

    from sightline_local.cli import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["local", "up", "--no-demo", "--aws-port", str(port)]) == 2
    assert f"127.0.0.1:{port} is in use" in capsys.readouterr().err
