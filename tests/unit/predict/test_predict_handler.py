from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

import pytest
from predict_helpers import classifier_labels
from support import REPO, LambdaContext, load_event, load_function

CONTEXT = LambdaContext()


@pytest.fixture(scope="module")
def handler():
    return load_function("predict").handler


def invoke(handler, event: dict) -> tuple[int, dict]:
    response = handler(event, CONTEXT)
    assert response["headers"]["Content-Type"] == "application/json"
    return response["statusCode"], json.loads(response["body"])


@pytest.fixture
def classifier_id(seed_model, classifier_onnx) -> str:
    return seed_model(classifier_onnx, classifier_labels())


def for_model(fixture: str, model_id: str) -> dict:
    event = load_event(fixture)
    event["pathParameters"]["id"] = model_id
    return event


def test_a_base64_encoded_image_body_is_predicted(handler, classifier_id):
    # image/png is a binary media type: API Gateway hands the body over base64-encoded.
    status, answer = invoke(handler, for_model("apigw_predict_image.json", classifier_id))
    assert status == 200
    assert answer["model_id"] == classifier_id
    assert answer["task"] == "classification"
    assert answer["image"] == {"width": 12, "height": 8}
    assert [p["label"] for p in answer["predictions"]] == ["red", "blue"]  # max_results=2 from the query


def test_a_json_body_is_predicted(handler, classifier_id):
    status, answer = invoke(handler, for_model("apigw_predict_json.json", classifier_id))
    assert status == 200
    assert [p["label"] for p in answer["predictions"]] == ["blue"]


def test_header_names_are_case_insensitive(handler, classifier_id):
    event = for_model("apigw_predict_image.json", classifier_id)
    for casing in ("Content-Type", "CONTENT-TYPE", "content-type"):
        event["headers"] = {casing: "image/png"}
        assert invoke(handler, event)[0] == 200


def test_errors_carry_their_status_and_code(handler, classifier_id):
    status, answer = invoke(handler, for_model("apigw_predict_text.json", classifier_id))
    assert status == 415
    assert answer["error"]["code"] == "unsupported_media_type"
    assert "text/plain" in answer["error"]["message"]

    not_an_image = for_model("apigw_predict_image.json", classifier_id)
    not_an_image["body"] = base64.b64encode(b"definitely not a png").decode()
    status, answer = invoke(handler, not_an_image)
    assert status == 400
    assert answer["error"]["message"].startswith("body is not a readable JPEG or PNG image")

    status, answer = invoke(handler, for_model("apigw_predict_image.json", "mdl-doesnotexist"))
    assert status == 404
    assert set(answer["error"]) == {"code", "message"}


def test_a_model_still_training_is_a_conflict(handler, seed_model):
    model_id = seed_model(None, classifier_labels(), status="training")
    status, answer = invoke(handler, for_model("apigw_predict_image.json", model_id))
    assert (status, answer["error"]["code"]) == (409, "model_not_ready")


def test_a_broken_model_is_a_generic_500_with_the_detail_in_the_log(handler, seed_model, classifier_onnx, caplog):
    # labels.json promises 5 classes; the model gives 3 logits.
    model_id = seed_model(classifier_onnx, classifier_labels(classes=["a", "b", "c", "d", "e"]))
    status, answer = invoke(handler, for_model("apigw_predict_image.json", model_id))
    assert status == 500
    # A code and a reference to quote (the request id), never the internal detail.
    reference = answer["error"]["reference"]
    assert answer["error"]["code"] == "internal_error" and reference
    assert reference in answer["error"]["message"] and "logits" not in answer["error"]["message"]
    errors = [record for record in caplog.records if record.levelname == "ERROR"]
    assert errors and errors[-1].exc_info is not None  # the stack trace is logged
    assert "gives 3 logits for 5 classes" in str(errors[-1].exc_info[1])


def test_an_unreadable_base64_body_is_a_bad_request(handler, classifier_id):
    event = for_model("apigw_predict_image.json", classifier_id)
    event["body"] = "@@@"
    status, answer = invoke(handler, event)
    assert status == 400


def test_the_function_imports_neither_torch_nor_eagerly_onnxruntime_nor_the_xray_sdk():
    # torch is only in the test environment; the Lambda package has onnxruntime, numpy, Pillow, boto3, powertools.
    # The X-Ray SDK took 0.3 to 0.56 s of a cold start: Lambda's active tracing traces predict without it.
    script = (
        "import sys\n"
        "import support\n"
        "support.load_function('predict')\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "assert 'onnxruntime' not in sys.modules, 'onnxruntime imported before a model is loaded'\n"
        "assert 'aws_xray_sdk' not in sys.modules, 'the X-Ray SDK imported'\n"
    )
    path = os.pathsep.join(str(folder) for folder in (REPO / "layers" / "sightline", REPO / "tests"))
    subprocess.run([sys.executable, "-c", script], check=True, env={**os.environ, "PYTHONPATH": path})


def emitted_metrics(output: str) -> dict[str, list]:
    """The EMF documents Powertools printed: metric name -> its values, across the lines."""
    found: dict[str, list] = {}
    for line in output.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            document = json.loads(line)
            for directive in document["_aws"]["CloudWatchMetrics"]:
                for metric in directive["Metrics"]:
                    value = document[metric["Name"]]
                    found.setdefault(metric["Name"], []).extend(value if isinstance(value, list) else [value])
    return found


def test_each_answer_and_refusal_is_counted_in_emf_metrics(handler, classifier_id, capsys):
    capsys.readouterr()
    assert invoke(handler, for_model("apigw_predict_image.json", classifier_id))[0] == 200
    answered = emitted_metrics(capsys.readouterr().out)
    assert answered["Predictions"] == [1.0] and len(answered["PredictLatency"]) == 1
    assert answered["PredictLatency"][0] > 0
    assert "PredictClientErrors" not in answered

    assert invoke(handler, for_model("apigw_predict_image.json", "no-such-model"))[0] == 404
    refused = emitted_metrics(capsys.readouterr().out)
    assert refused == {"PredictClientErrors": [1.0]}
