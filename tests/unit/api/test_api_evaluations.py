"""POST /v1/models/{id}/versions/{v}/evaluations, GET /v1/evaluations/{id} and GET /v1/evaluations/compare."""
from __future__ import annotations

import json
from typing import Any

import pytest

from sightline import aws, evaluations, model_registry
from sightline.config import get_settings
from sightline.contract import EvaluationEnvironment, VersionStatus
from api_helpers import request

QUEUE = "arn:aws:batch:us-east-1:123456789012:job-queue/sightline-test-evaluation"
DEFINITION = "arn:aws:batch:us-east-1:123456789012:job-definition/sightline-test-evaluation"


class FakeBatch:
    """Batch as the API sees it: submitted jobs, and the state each is in."""

    def __init__(self) -> None:
        self.submitted: list[dict[str, Any]] = []
        self.jobs: dict[str, dict[str, Any]] = {}
        self.refuse = False
        self.terminated: list[str] = []

    def submit_job(self, **request: Any) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        if self.refuse:
            raise ClientError({"Error": {"Code": "ClientException", "Message": "queue is disabled"}}, "SubmitJob")
        job_id = f"job-{len(self.submitted) + 1}"
        self.submitted.append(request)
        self.jobs[job_id] = {"jobId": job_id, "status": "SUBMITTED"}
        return {"jobId": job_id, "jobName": request["jobName"]}

    def terminate_job(self, jobId: str, reason: str) -> dict[str, Any]:  # noqa: N803 - boto3's name
        self.jobs[jobId] = {**self.jobs[jobId], "status": "FAILED", "statusReason": reason}
        self.terminated.append(jobId)
        return {}

    def describe_jobs(self, jobs: list[str]) -> dict[str, Any]:
        return {"jobs": [self.jobs[job_id] for job_id in jobs if job_id in self.jobs]}


@pytest.fixture
def batch(api_datasets, monkeypatch):
    monkeypatch.setenv("EVALUATION_JOB_QUEUE", QUEUE)
    monkeypatch.setenv("EVALUATION_JOB_DEFINITION", DEFINITION)
    get_settings.cache_clear()
    fake = FakeBatch()
    monkeypatch.setattr(evaluations, "_batch", lambda: fake)
    yield fake
    get_settings.cache_clear()


@pytest.fixture
def trained(batch):
    """A classification model (cat, dog) whose version 1 finished training."""
    model_id = request("apigw_post_models.json").json["model_id"]
    bucket = get_settings().artifact_bucket
    model_registry.update_version(model_id, 1, status=VersionStatus.READY, finished_at=aws.utc_now(),
                                  artifacts={"model": f"s3://{bucket}/models/{model_id}/v1/model.onnx"})
    return model_id


def evaluate(model_id: str, body: Any, version: str = "1"):
    return request("apigw_post_model_versions.json", path=f"/v1/models/{model_id}/versions/{version}/evaluations",
                   body=body)


def evaluation(evaluation_id: str):
    return request("apigw_get_model.json", path=f"/v1/evaluations/{evaluation_id}")


def compare(ids: str | None):
    return request("apigw_get_model.json", path="/v1/evaluations/compare", query={} if ids is None else {"ids": ids})


def put_json(key: str, document: dict) -> None:
    aws.client("s3").put_object(Bucket=get_settings().artifact_bucket, Key=key, Body=json.dumps(document).encode())


def test_an_evaluation_is_recorded_with_its_manifest_and_its_job_submitted(trained, batch):
    answer = evaluate(trained, {"dataset": "more-pets"})
    assert answer.status == 202, answer.json
    record = answer.json
    evaluation_id = record["evaluation_id"]
    assert answer.headers["location"] == f"/v1/evaluations/{evaluation_id}"
    assert (record["status"], record["model_id"], record["version"], record["dataset"]) == (
        "queued", trained, 1, "more-pets")
    assert record["job_id"] == "job-1" and record["snapshot"] and record["created_at"]
    bucket = get_settings().artifact_bucket
    assert record["manifest"] == f"s3://{bucket}/evaluations/{evaluation_id}/manifest.json"
    manifest = json.loads(aws.client("s3").get_object(
        Bucket=bucket, Key=f"evaluations/{evaluation_id}/manifest.json")["Body"].read())
    assert manifest["datasets"] == ["more-pets"] and manifest["classes"] == ["cat", "dog"]
    assert len(manifest["items"]) == 11 and {item["split"] for item in manifest["items"]} == {"validation"}

    [submitted] = batch.submitted
    assert (submitted["jobQueue"], submitted["jobDefinition"]) == (QUEUE, DEFINITION)
    environment = {e["name"]: e["value"] for e in submitted["containerOverrides"]["environment"]}
    assert environment == {
        EvaluationEnvironment.MANIFEST_URI: record["manifest"],
        EvaluationEnvironment.MODEL_URI: f"s3://{bucket}/models/{trained}/v1/",
        EvaluationEnvironment.OUTPUT_URI: f"s3://{bucket}/evaluations/{evaluation_id}/",
    }
    assert evaluation(evaluation_id).json["status"] == "queued"


@pytest.mark.parametrize("body, status, code", [
    ({"dataset": "nowhere"}, 404, "dataset_not_found"),
    ({"dataset": "broken"}, 409, "dataset_not_ready"),
    ({"dataset": "shapes"}, 400, "no_evaluation_data"),  # detection only; the model classifies
    ({}, 400, "invalid_dataset"),
    ({"dataset": "pets", "threshold": 0.5}, 400, "unknown_field"),
])
def test_datasets_that_cannot_be_evaluated_on_are_refused(trained, batch, body, status, code):
    answer = evaluate(trained, body)
    assert (answer.status, answer.json["error"]["code"]) == (status, code), answer.json
    assert batch.submitted == []


def test_only_trained_versions_of_known_models_are_evaluated(batch):
    model_id = request("apigw_post_models.json").json["model_id"]  # version 1 is training
    answer = evaluate(model_id, {"dataset": "pets"})
    assert (answer.status, answer.json["error"]["code"]) == (409, "version_not_trained")
    assert evaluate(model_id, {"dataset": "pets"}, version="7").json["error"]["code"] == "version_not_found"
    assert evaluate("nosuchmodel", {"dataset": "pets"}).json["error"]["code"] == "model_not_found"
    assert evaluate(model_id, {"dataset": "pets"}, version="x").json["error"]["code"] == "invalid_version"


def test_a_job_batch_refuses_fails_the_evaluation(trained, batch):
    batch.refuse = True
    answer = evaluate(trained, {"dataset": "pets"})
    assert (answer.status, answer.json["error"]["code"]) == (503, "evaluation_unavailable")
    [item] = [i for i in aws.table(get_settings().table_name).scan()["Items"] if i["pk"].startswith("EVALUATION#")]
    assert item["status"] == "failed" and "queue is disabled" in item["failure_reason"]


def test_reading_settles_an_evaluation_from_its_job_and_its_report(trained, batch):
    evaluation_id = evaluate(trained, {"dataset": "pets"}).json["evaluation_id"]
    batch.jobs["job-1"]["status"] = "RUNNING"
    assert evaluation(evaluation_id).json["status"] == "running"
    put_json(f"evaluations/{evaluation_id}/evaluation.json", {
        "metrics": {"accuracy": 0.75, "f1_macro": 0.5}, "images": {"total": 11, "evaluated": 11, "unknown_class": 0},
        "class_mismatch": {"dataset_only": [], "model_only": []}})
    answer = evaluation(evaluation_id)
    assert answer.status == 200
    assert answer.json["status"] == "succeeded" and answer.json["metrics"] == {"accuracy": 0.75, "f1_macro": 0.5}
    assert answer.json["images"]["evaluated"] == 11
    report = answer.json["report"]
    assert report["uri"].endswith(f"evaluations/{evaluation_id}/evaluation.json") and "Signature" in report["url"]
    batch.jobs["job-1"]["status"] = "FAILED"  # a finished evaluation never changes
    assert evaluation(evaluation_id).json["status"] == "succeeded"


def test_a_failed_job_fails_the_evaluation_with_its_reason(trained, batch):
    first = evaluate(trained, {"dataset": "pets"}).json["evaluation_id"]
    second = evaluate(trained, {"dataset": "pets"}).json["evaluation_id"]
    put_json(f"evaluations/{first}/failure.json", {"reason": "none of the dataset's 11 images is of a class"})
    batch.jobs["job-1"].update(status="FAILED", statusReason="Essential container in task exited")
    batch.jobs["job-2"].update(status="FAILED", statusReason="Job attempt duration exceeded timeout")
    assert evaluation(first).json["failure_reason"] == "none of the dataset's 11 images is of a class"
    answer = evaluation(second).json
    assert (answer["status"], answer["failure_reason"]) == ("failed", "Job attempt duration exceeded timeout")
    assert "report" not in answer


def test_unknown_evaluations_are_not_found(batch):
    for evaluation_id in ("0" * 32, "compare-me", "x"):
        answer = evaluation(evaluation_id)
        assert (answer.status, answer.json["error"]["code"]) == (404, "evaluation_not_found")


def test_compare_lays_evaluations_side_by_side(trained, batch):
    ids = [evaluate(trained, {"dataset": name}).json["evaluation_id"] for name in ("pets", "more-pets", "pets")]
    put_json(f"evaluations/{ids[0]}/evaluation.json", {"metrics": {"accuracy": 0.5, "f1_macro": 0.4}})
    put_json(f"evaluations/{ids[1]}/evaluation.json", {"metrics": {"accuracy": 1.0, "f1_macro": 1.0,
                                                                   "precision_macro": 1.0}})
    answer = compare(",".join(ids))
    assert answer.status == 200, answer.json
    columns = answer.json["evaluations"]
    assert [c["evaluation_id"] for c in columns] == ids
    assert [c["dataset"] for c in columns] == ["pets", "more-pets", "pets"]
    assert [c["status"] for c in columns] == ["succeeded", "succeeded", "queued"]
    assert answer.json["rows"] == [{"metric": "accuracy", "values": [0.5, 1.0, None]},
                                   {"metric": "f1_macro", "values": [0.4, 1.0, None]}]


def test_compare_names_unknown_ids_and_limits_how_many(trained, batch):
    known = evaluate(trained, {"dataset": "pets"}).json["evaluation_id"]
    answer = compare(f"{known},{'a' * 32},nope")
    assert (answer.status, answer.json["error"]["code"]) == (404, "evaluation_not_found")
    assert "a" * 32 in answer.json["error"]["message"] and "nope" in answer.json["error"]["message"]
    assert known not in answer.json["error"]["message"]
    assert compare(",".join(f"{n:032x}" for n in range(11))).json["error"]["code"] == "invalid_ids"
    assert compare(None).json["error"]["code"] == "invalid_ids"
    assert compare(" , ").status == 400


def test_a_record_whose_job_never_started_or_is_forgotten_fails(trained, batch):
    first = evaluate(trained, {"dataset": "pets"}).json["evaluation_id"]
    second = evaluate(trained, {"dataset": "pets"}).json["evaluation_id"]
    table = aws.table(get_settings().table_name)
    table.update_item(Key={"pk": f"EVALUATION#{first}", "sk": "META"}, UpdateExpression="REMOVE job_id")
    assert evaluation(first).json["status"] == "queued"  # the API may still be submitting it
    table.update_item(Key={"pk": f"EVALUATION#{first}", "sk": "META"}, UpdateExpression="SET created_at = :t",
                      ExpressionAttributeValues={":t": "2020-01-01T00:00:00.000000Z"})
    answer = evaluation(first).json
    assert (answer["status"], answer["failure_reason"]) == ("failed", "the evaluation job was never submitted")
    del batch.jobs["job-2"]
    answer = evaluation(second).json
    assert (answer["status"], answer["failure_reason"]) == ("failed", "Batch no longer knows the job")


def manifest_of(record: dict) -> dict:
    key = record["manifest"].split("/", 3)[3]
    return json.loads(aws.client("s3").get_object(Bucket=get_settings().artifact_bucket, Key=key)["Body"].read())


def test_the_images_a_version_trained_on_are_left_out_unless_asked_for(trained, batch):
    everything = evaluate(trained, {"dataset": "pets", "include_training_images": True})
    assert everything.status == 202, everything.json
    ids = [item["id"] for item in manifest_of(everything.json)["items"]]
    assert len(ids) == 11 and everything.json["excluded_training_images"] == 0
    # The version's training manifest: three of these images trained it, one validated it.
    put_json(f"manifests/{trained}/v1/manifest.json", {"items": [
        *({"id": image_id, "split": "train"} for image_id in ids[:3]), {"id": ids[3], "split": "validation"}]})

    honest = evaluate(trained, {"dataset": "pets"})
    assert honest.status == 202, honest.json
    assert honest.json["include_training_images"] is False and honest.json["excluded_training_images"] == 3
    assert sorted(item["id"] for item in manifest_of(honest.json)["items"]) == sorted(ids[3:])
    assert evaluation(honest.json["evaluation_id"]).json["excluded_training_images"] == 3

    put_json(f"manifests/{trained}/v1/manifest.json", {"items": [{"id": i, "split": "train"} for i in ids]})
    refused = evaluate(trained, {"dataset": "pets"})
    assert (refused.status, refused.json["error"]["code"]) == (400, "no_evaluation_data")
    assert "include_training_images" in refused.json["error"]["message"]
    assert evaluate(trained, {"dataset": "pets", "include_training_images": "yes"}).json["error"]["code"] == (
        "invalid_include_training_images")


def stored_keys(prefix: str) -> list[str]:
    listed = aws.client("s3").list_objects_v2(Bucket=get_settings().artifact_bucket, Prefix=prefix)
    return [obj["Key"] for obj in listed.get("Contents", [])]


def test_deleting_a_model_removes_its_evaluations_and_stops_their_jobs(trained, batch):
    finished = evaluate(trained, {"dataset": "more-pets"}).json
    put_json(f"evaluations/{finished['evaluation_id']}/evaluation.json",
             {"metrics": {"accuracy": 1.0}, "images": {"total": 11, "evaluated": 11, "unknown_class": 0}})
    assert evaluation(finished["evaluation_id"]).json["status"] == "succeeded"  # read: settled from its report
    running = evaluate(trained, {"dataset": "more-pets"}).json
    assert len(stored_keys("evaluations/")) == 3  # two manifests and a report

    deleted = request("apigw_post_model_versions.json", method="DELETE", path=f"/v1/models/{trained}")
    assert deleted.status in (200, 202), deleted.json
    for record in (finished, running):
        assert evaluation(record["evaluation_id"]).status == 404
    assert stored_keys("evaluations/") == []
    assert batch.terminated == [running["job_id"]]  # the unfinished one, so that it writes no report afterwards


def test_deleting_a_version_removes_only_that_versions_evaluations(trained, batch):
    kept = evaluate(trained, {"dataset": "more-pets"}).json
    assert evaluations.delete_evaluations_of(trained, 2) == 0  # version 2 has none
    assert evaluation(kept["evaluation_id"]).status == 200
    deleted = request("apigw_post_model_versions.json", method="DELETE", path=f"/v1/models/{trained}/versions/1")
    assert deleted.status == 200, deleted.json
    assert evaluation(kept["evaluation_id"]).status == 404 and stored_keys("evaluations/") == []
