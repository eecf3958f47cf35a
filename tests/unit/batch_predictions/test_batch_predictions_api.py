"""POST /v1/models/{id}/batch-predictions and GET /v1/batch-predictions/{id}: checked requests, the job recorded and
its workflow started, settled from the execution when read, and the workflow's last step."""
from __future__ import annotations

import json

import boto3
import pytest
from batch_helpers import helpers

from support import TEST_ENV

PREFIX = f"s3://{TEST_ENV['DATA_BUCKET']}/incoming/"


def _call(method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    from sightline import api

    event = {"httpMethod": method, "path": path, "resource": path, "headers": {"content-type": "application/json"},
             "requestContext": {"requestId": "r", "stage": "prod", "resourcePath": path, "httpMethod": method},
             "body": json.dumps(body) if body is not None else None, "isBase64Encoded": False,
             "queryStringParameters": None, "pathParameters": None}
    answer = api.app.resolve(event, {})
    return answer["statusCode"], json.loads(answer["body"])


def _upload(aws_resources, key: str = "incoming/red.png") -> None:
    aws_resources.s3.put_object(Bucket=aws_resources.data_bucket, Key=key,
                                Body=helpers.encode(helpers.solid((250, 10, 10))))


def test_a_batch_prediction_starts_the_workflow_with_the_pinned_version(aws_resources, ready_classifier,
                                                                          batch_state_machine):
    _upload(aws_resources)
    status, answer = _call("POST", f"/v1/models/{ready_classifier}/batch-predictions",
                           {"s3_prefix": PREFIX, "threshold": 0.2, "classes": ["red"],
                            "video": {"frames_per_second": 2, "max_frames": 10}})
    assert status == 202, answer
    assert answer["status"] == "running" and answer["version"] == 1 and answer["source"] == PREFIX
    assert answer["options"] == {"threshold": 0.2, "classes": ["red"]}
    assert answer["video"] == {"frames_per_second": 2.0, "max_frames": 10}
    execution = boto3.client("stepfunctions").describe_execution(executionArn=answer["execution_arn"])
    sent = json.loads(execution["input"])
    assert sent["prefix"] == "incoming/" and sent["bucket"] == aws_resources.data_bucket
    assert sent["version"] == 1 and sent["artifacts"]["model"].endswith("/v1/model.onnx")
    assert sent["integrity"] == {}  # this version was recorded without pinned objects; pinned ones are passed on
    assert sent["batch_prediction_id"] == answer["batch_prediction_id"]

    status, read = _call("GET", f"/v1/batch-predictions/{answer['batch_prediction_id']}")
    assert status == 200 and read["status"] == "running"
    assert read["counts"]["done"] == 0 and read["results"]["manifest"] is None
    assert read["results"]["parts"] == (f"s3://{aws_resources.artifact_bucket}/batch-predictions/"
                                        f"{answer['batch_prediction_id']}/parts/")


@pytest.mark.parametrize("body, code", [
    ({}, "invalid_s3_prefix"),
    ({"s3_prefix": "incoming/"}, "invalid_s3_prefix"),
    ({"s3_prefix": "s3://someone-elses-bucket/incoming/"}, "invalid_s3_prefix"),
    ({"s3_prefix": PREFIX, "threshold": 2}, "invalid_threshold"),
    ({"s3_prefix": PREFIX, "max_results": "5"}, "invalid_max_results"),
    ({"s3_prefix": PREFIX, "classes": ["purple"]}, "invalid_classes"),
    ({"s3_prefix": PREFIX, "video": {"frames_per_second": 0}}, "invalid_video_options"),
    ({"s3_prefix": PREFIX, "images": []}, "unknown_field"),
    ({"s3_prefix": f"s3://{TEST_ENV['DATA_BUCKET']}/nothing-here/"}, "no_objects"),
])
def test_bad_requests_are_refused_with_their_reason(aws_resources, ready_classifier, batch_state_machine, body, code):
    _upload(aws_resources)
    status, answer = _call("POST", f"/v1/models/{ready_classifier}/batch-predictions", body)
    assert (status, answer["error"]["code"]) == (400, code)


def test_a_model_that_cannot_answer_is_refused(aws_resources, ready_classifier, batch_state_machine):
    _upload(aws_resources)
    status, answer = _call("POST", "/v1/models/no-such-model/batch-predictions", {"s3_prefix": PREFIX})
    assert status == 404
    status, answer = _call("POST", f"/v1/models/{ready_classifier}/batch-predictions",
                           {"s3_prefix": PREFIX, "version": 7})
    assert status == 404, answer


def test_a_workflow_that_cannot_start_is_a_503_and_a_failed_record(aws_resources, ready_classifier, monkeypatch):
    from sightline.config import get_settings

    monkeypatch.setenv("BATCH_PREDICTION_STATE_MACHINE_ARN",
                       "arn:aws:states:us-east-1:123456789012:stateMachine:missing")
    get_settings.cache_clear()
    _upload(aws_resources)
    status, answer = _call("POST", f"/v1/models/{ready_classifier}/batch-predictions", {"s3_prefix": PREFIX})
    assert (status, answer["error"]["code"]) == (503, "batch_prediction_unavailable")
    items = aws_resources.table.scan()["Items"]
    assert [item["status"] for item in items if item["pk"].startswith("BATCHPREDICTION#")] == ["failed"]


def test_an_execution_stopped_outside_the_workflow_settles_the_job_as_failed(aws_resources, ready_classifier,
                                                                               batch_state_machine):
    _upload(aws_resources)
    _, started = _call("POST", f"/v1/models/{ready_classifier}/batch-predictions", {"s3_prefix": PREFIX})
    boto3.client("stepfunctions").stop_execution(executionArn=started["execution_arn"], error="Manual",
                                                 cause="stopped by an operator")
    status, read = _call("GET", f"/v1/batch-predictions/{started['batch_prediction_id']}")
    assert status == 200 and read["status"] == "failed"
    assert "ABORTED" in read["failure_reason"] and read["finished_at"]


def test_the_last_step_writes_the_manifest_and_settles_the_job(aws_resources, ready_classifier, batch_state_machine):
    from sightline import batch_prediction_worker, batch_predictions

    _upload(aws_resources)
    _, started = _call("POST", f"/v1/models/{ready_classifier}/batch-predictions", {"s3_prefix": PREFIX})
    batch_id = started["batch_prediction_id"]
    execution_input = json.loads(boto3.client("stepfunctions").describe_execution(
        executionArn=started["execution_arn"])["input"])
    batch_input = {name: execution_input[name] for name in ("batch_prediction_id", "bucket", "model_id", "version",
                                                            "artifacts", "options", "video")}
    part = batch_prediction_worker.predict_batch(
        {"BatchInput": batch_input, "Items": [{"Key": "incoming/red.png", "Size": 100},
                                              {"Key": "incoming/gone.png", "Size": 100}]}, lambda: 900.0)
    finished = batch_predictions.finish({"batch_prediction_id": batch_id})
    assert finished["status"] == "succeeded"
    assert finished["counts"] == {"listed": 2, "done": 1, "failed": 1, "frames": 0, "parts": 1}

    status, read = _call("GET", f"/v1/batch-predictions/{batch_id}")
    assert status == 200 and read["status"] == "succeeded" and read["counts"]["listed"] == 2
    manifest_key = f"batch-predictions/{batch_id}/manifest.json"
    assert read["results"]["manifest"] == f"s3://{aws_resources.artifact_bucket}/{manifest_key}"
    assert read["results"]["manifest_url"].startswith("https://")
    manifest = json.loads(aws_resources.s3.get_object(Bucket=aws_resources.artifact_bucket,
                                                      Key=manifest_key)["Body"].read())
    assert manifest["format"] == "sightline.batch-predictions/v1"
    assert manifest["parts"] == [f"s3://{aws_resources.artifact_bucket}/{part['part']}"]
    # An ended job never changes again: a late failure record leaves it succeeded.
    again = batch_predictions.finish({"batch_prediction_id": batch_id, "error": {"Error": "X", "Cause": "late"}})
    assert again["status"] == "succeeded"


def test_the_last_step_records_the_maps_failure(aws_resources, ready_classifier, batch_state_machine):
    from sightline import batch_predictions

    _upload(aws_resources)
    _, started = _call("POST", f"/v1/models/{ready_classifier}/batch-predictions", {"s3_prefix": PREFIX})
    batch_predictions.finish({"batch_prediction_id": started["batch_prediction_id"],
                              "error": {"Error": "States.ItemReaderFailed", "Cause": "Access Denied"}})
    _, read = _call("GET", f"/v1/batch-predictions/{started['batch_prediction_id']}")
    assert read["status"] == "failed" and read["failure_reason"] == "States.ItemReaderFailed: Access Denied"


@pytest.mark.parametrize("batch_id", ["nope", "0" * 32])
def test_unknown_batch_predictions_are_404(aws_resources, batch_id):
    status, answer = _call("GET", f"/v1/batch-predictions/{batch_id}")
    assert (status, answer["error"]["code"]) == (404, "batch_prediction_not_found")


def test_deleting_the_model_stops_its_batch_predictions_and_removes_their_results(aws_resources, ready_classifier,
                                                                                  batch_state_machine):
    _upload(aws_resources)
    status, started = _call("POST", f"/v1/models/{ready_classifier}/batch-predictions", {"s3_prefix": PREFIX})
    assert status == 202, started
    batch_id = started["batch_prediction_id"]
    part = f"batch-predictions/{batch_id}/parts/some-part.jsonl"
    aws_resources.s3.put_object(Bucket=aws_resources.artifact_bucket, Key=part, Body=b"{}\n")

    status, _ = _call("DELETE", f"/v1/models/{ready_classifier}")

    assert status == 200
    execution = boto3.client("stepfunctions").describe_execution(executionArn=started["execution_arn"])
    assert execution["status"] == "ABORTED"  # stopped before its results were removed: nothing writes after
    listed = aws_resources.s3.list_objects_v2(Bucket=aws_resources.artifact_bucket, Prefix=f"batch-predictions/{batch_id}/")
    assert listed.get("KeyCount", 0) == 0
    assert _call("GET", f"/v1/batch-predictions/{batch_id}")[0] == 404
