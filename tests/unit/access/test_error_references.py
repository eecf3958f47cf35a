"""A 5xx answer names a code and the request id, never the AWS text (ARNs) that the log keeps."""
from __future__ import annotations

import json

import boto3

from sightline import usage_plans
from sightline.errors import SightlineError
from support import LambdaContext, load_event, load_function

ARN_TEXT = "AccessDenied: arn:aws:iam::123456789012:role/sightline-PredictFunctionRole is not authorized"


class Unavailable(SightlineError):
    status = 503
    code = "model_unavailable"


def test_predict_answers_a_reference_for_its_server_errors(monkeypatch, caplog):
    predict = load_function("predict")
    event = {"pathParameters": {"id": "mdl-0123456789ab"}, "requestContext": {"requestId": "req-42"}}
    for error in (Unavailable(ARN_TEXT), RuntimeError(ARN_TEXT)):
        def failing(_event, error=error):
            raise error

        monkeypatch.setattr(predict, "predict_event", failing)
        answer = predict.handler(event, LambdaContext())
        body = json.loads(answer["body"])["error"]
        assert answer["statusCode"] in (500, 503) and body["reference"] == "req-42"
        assert "arn:" not in answer["body"] and "req-42" in body["message"]
    assert ARN_TEXT in caplog.text



def test_the_api_logs_which_key_asked(aws_resources):
    gateway = boto3.client("apigateway", region_name="us-east-1")
    gateway.create_usage_plan(name="plan", apiStages=[{"apiId": "abc123defg", "stage": "prod"}])  # the fixture's
    usage_plans.forget()
    event = load_event("apigw_get_models.json")
    event["requestContext"]["authorizer"] = {"principalId": "0123456789abcdef", "key_id": "0123456789abcdef",
                                             "scopes": "admin"}
    event.update(httpMethod="POST", path="/v1/keys", body=json.dumps({"name": "ci", "scopes": ["read"]}))
    api = load_function("api")
    answer = api.handler(event, LambdaContext())
    assert answer["statusCode"] == 201
    assert api.logger.get_current_keys()["caller_key_id"] == "0123456789abcdef"  # on every line of the request
    usage_plans.forget()
