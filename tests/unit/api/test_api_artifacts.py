"""GET /v1/models/{id}/versions/{v}/artifacts: the version's files with presigned download links."""
from __future__ import annotations

import urllib.parse

import pytest

from sightline import aws, model_registry
from sightline.config import get_settings
from sightline.contract import VersionStatus
from api_helpers import request

FILES = {"model.onnx": b"onnx" * 100, "labels.json": b"{}", "metrics.json": b'{"accuracy": 1}',
         "card.json": b'{"format": "sightline.card/v1"}'}


@pytest.fixture
def trained(api_datasets):
    """A model whose version 1 finished with its files, its manifest and its checkpoint."""
    model_id = request("apigw_post_models.json").json["model_id"]
    s3, bucket = aws.client("s3"), get_settings().artifact_bucket
    for name, body in FILES.items():
        s3.put_object(Bucket=bucket, Key=f"models/{model_id}/v1/{name}", Body=body)
    s3.put_object(Bucket=bucket, Key=f"checkpoints/{model_id}/v1/checkpoint.pt", Body=b"state")
    s3.put_object(Bucket=bucket, Key=f"manifests/{model_id}/v1/manifest.json", Body=b"{}")
    model_registry.update_version(model_id, 1, status=VersionStatus.READY, finished_at=aws.utc_now(), artifacts={
        "model": f"s3://{bucket}/models/{model_id}/v1/model.onnx",
        "manifest": f"s3://{bucket}/manifests/{model_id}/v1/manifest.json",
        "checkpoint": f"s3://{bucket}/checkpoints/{model_id}/v1/checkpoint.pt"})
    return model_id


def artifacts_of(model_id: str, version: str):
    return request("apigw_get_model_version.json", path=f"/v1/models/{model_id}/versions/{version}/artifacts")


def test_every_file_is_listed_with_a_link_that_downloads_it(trained):
    answer = artifacts_of(trained, "1")
    assert answer.status == 200, answer.json
    assert (answer.json["model_id"], answer.json["version"], answer.json["status"]) == (trained, 1, "ready")
    listed = {entry["name"]: entry for entry in answer.json["artifacts"]}
    assert set(listed) == set(FILES) | {"manifest.json", "checkpoint.pt"}
    assert listed["model.onnx"]["size"] == len(FILES["model.onnx"])
    assert listed["checkpoint.pt"]["uri"].endswith(f"checkpoints/{trained}/v1/checkpoint.pt")
    # The link is signed for a GET of that very object, for an hour.
    url = urllib.parse.urlparse(listed["card.json"]["url"])
    query = urllib.parse.parse_qs(url.query)
    assert url.path.endswith(f"models/{trained}/v1/card.json")
    assert query["X-Amz-Expires"] == [str(answer.json["expires_in"])] == ["3600"]
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    bucket, key = listed["card.json"]["uri"][len("s3://"):].split("/", 1)
    assert aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read() == FILES["card.json"]


def test_a_version_without_a_checkpoint_lists_what_it_has(trained):
    aws.client("s3").delete_object(Bucket=get_settings().artifact_bucket,
                                   Key=f"checkpoints/{trained}/v1/checkpoint.pt")
    names = {entry["name"] for entry in artifacts_of(trained, "1").json["artifacts"]}
    assert "checkpoint.pt" not in names and "model.onnx" in names


def test_unknown_versions_and_bad_numbers_are_refused(trained):
    assert artifacts_of(trained, "7").status == 404
    assert artifacts_of("mdl-000000000000", "1").status == 404
    assert artifacts_of(trained, "zero").status == 400
