"""A 5xx answer names a code and the request id, never the AWS text (ARNs) that the log keeps."""
from __future__ import annotations

import json

from sightline.errors import SightlineError
from support import LambdaContext, load_function

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
