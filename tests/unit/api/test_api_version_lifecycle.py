"""Promote (rollback), delete a version, delete a model: by hand, through the API."""
from __future__ import annotations

import pytest

from sightline import aws, events, model_registry
from sightline.config import get_settings
from sightline.contract import VersionStatus
from api_helpers import request


@pytest.fixture
def two_versions(api_datasets, monkeypatch):
    """A model whose version 2 serves and whose version 1 trained before it; both have artifacts."""
    published: list[tuple[str, dict]] = []
    monkeypatch.setattr(events, "publish", lambda detail_type, detail: published.append((detail_type, detail)))
    model_id = request("apigw_post_models.json").json["model_id"]
    s3, bucket = aws.client("s3"), get_settings().artifact_bucket
    for number in (1, 2):
        if number == 2:
            model_registry.create_version(model_id, model_registry_spec(model_id), trigger={"type": "api"})
        for name in ("model.onnx", "labels.json", "metrics.json"):
            s3.put_object(Bucket=bucket, Key=f"models/{model_id}/v{number}/{name}", Body=b"x")
        s3.put_object(Bucket=bucket, Key=f"checkpoints/{model_id}/v{number}/checkpoint.pt", Body=b"x")
        model_registry.update_version(model_id, number, status=VersionStatus.READY, finished_at=aws.utc_now(),
                                      classes=["cat", "dog"],
                                      artifacts={"model": f"s3://{bucket}/models/{model_id}/v{number}/model.onnx"})
        serving = model_registry.get_model(model_id).get("serving_version")
        assert model_registry.set_serving_version(model_id, number, replacing=serving)
    return model_id, published


def model_registry_spec(model_id: str):
    from sightline.training_spec import TrainingSpec

    model = model_registry.get_model(model_id)
    return TrainingSpec(datasets=model["datasets"], template=model["template"], params=model["params"],
                        dataset_digests={})


def call(method: str, path: str):
    return request("apigw_post_model_versions.json", method=method, path=path, raw_body="")


def artifact_keys(model_id: str) -> set[str]:
    listing = aws.client("s3").list_objects_v2(Bucket=get_settings().artifact_bucket)
    return {obj["Key"] for obj in listing.get("Contents", []) if model_id in obj["Key"]}


def test_promoting_an_older_version_rolls_back_and_says_so(two_versions):
    model_id, published = two_versions
    answer = call("POST", f"/v1/models/{model_id}/versions/1/promote")
    assert (answer.status, answer.json) == (200, {"model_id": model_id, "serving_version": 1})
    assert model_registry.get_model(model_id)["serving_version"] == 1
    assert published[-1] == ("ModelVersionPromoted", {"model_id": model_id, "version": 1, "previous_version": 2,
                                                      "by": "request"})
    assert call("POST", f"/v1/models/{model_id}/versions/1/promote").status == 200  # already serving: same answer


def test_a_version_that_did_not_train_cannot_serve(two_versions):
    model_id, _ = two_versions
    model_registry.update_version(model_id, 1, status=VersionStatus.FAILED)
    answer = call("POST", f"/v1/models/{model_id}/versions/1/promote")
    assert (answer.status, answer.json["error"]["code"]) == (409, "version_not_ready")
    assert call("POST", f"/v1/models/{model_id}/versions/9/promote").status == 404


def test_a_version_is_deleted_with_its_artifacts_but_never_the_serving_one(two_versions):
    model_id, _ = two_versions
    refused = call("DELETE", f"/v1/models/{model_id}/versions/2")
    assert (refused.status, refused.json["error"]["code"]) == (409, "version_serving")

    assert call("DELETE", f"/v1/models/{model_id}/versions/1").json == {"model_id": model_id, "version": 1,
                                                                         "deleted": True}
    assert call("GET", f"/v1/models/{model_id}/versions/1").status == 404
    assert all("/v2/" in key for key in artifact_keys(model_id))
    assert model_registry.get_model(model_id)["serving_version"] == 2


def test_a_deleted_model_takes_its_versions_and_artifacts_and_leaves_its_datasets(two_versions):
    model_id, _ = two_versions
    datasets_before = request("apigw_get_datasets.json").json["datasets"]
    assert call("DELETE", f"/v1/models/{model_id}").json == {"model_id": model_id, "deleted": True}
    assert call("GET", f"/v1/models/{model_id}").status == 404
    assert artifact_keys(model_id) == set()
    assert request("apigw_get_datasets.json").json["datasets"] == datasets_before
    assert call("DELETE", f"/v1/models/{model_id}").status == 404


def test_deleting_a_model_that_trains_cancels_the_run(api_datasets, monkeypatch):
    from test_api_cancel_progress import stopped_executions

    monkeypatch.setattr(events, "publish", lambda detail_type, detail: None)
    model_id = request("apigw_post_models.json").json["model_id"]
    execution = model_registry.get_version(model_id, 1)["execution_arn"]
    stopped = stopped_executions(monkeypatch)
    assert call("DELETE", f"/v1/models/{model_id}").status == 200
    assert stopped == [execution]
