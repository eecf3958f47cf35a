"""End to end through the local stack: a trained classifier predicts every object under a data bucket prefix
(images, a file that is not one, a video sampled with PyAV) through the batch prediction workflow, the real
Distributed Map definition run by moto's interpreter (with the local stack's ItemBatcher), the batch function
and the last step. Nothing here is mocked."""
from __future__ import annotations

import json
import random
import urllib.request

import pytest

from sightline_client import ValidationError
from sightline_local import synthetic
from support import REPO, StackClient, load_module, running_stack, wait_until

pytestmark = pytest.mark.e2e

write_video = load_module(REPO / "tests" / "unit" / "batch_predictions" / "batch_helpers.py").write_video


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("state"), "e2e-batch-key-0123456789") as local:
        yield local


def test_a_prefix_of_images_and_a_video_is_predicted_in_batches(stack, tmp_path):
    api = StackClient(stack.config.api_url, stack.api_key)
    s3, data_bucket = stack.client("s3"), stack.output("DataBucketName")
    s3.put_object(Bucket=data_bucket, Key="datasets/shapes/shapes.zip",
                  Body=synthetic.classification_zip(per_class=5, size=48))
    wait_until(lambda: api.get_dataset("shapes"), lambda d: d["status"] == "ready" and d["images"] == 10, timeout=120)
    model_id = api.create_model("shapes", "classification", ["shapes"],
                                params={"epochs": 1, "image_size": 64, "batch_size": 8})["model_id"]
    assert api.last.status_code == 202
    model = wait_until(lambda: api.get_model(model_id), lambda m: m["status"] in ("ready", "failed"), timeout=600,
                       interval=2)
    assert model["status"] == "ready", model.get("failure_reason")

    # 21 images, a text file and a video: 23 objects, two batches of at most 20.
    rng = random.Random(5)
    for n in range(21):
        image, _ = synthetic.shapes_image(rng, 40, 30, labels=("square",))
        s3.put_object(Bucket=data_bucket, Key=f"incoming/{n:02d}.png", Body=synthetic.encode(image))
    s3.put_object(Bucket=data_bucket, Key="incoming/readme.txt", Body=b"not an image")
    clip = write_video(tmp_path / "clip.mp4", seconds=2.0, rate=10, size=(48, 32))
    s3.put_object(Bucket=data_bucket, Key="incoming/clip.mp4", Body=clip.read_bytes())

    with pytest.raises(ValidationError) as refused:
        api.create_batch_prediction(model_id, "s3://elsewhere/incoming/")
    assert (refused.value.status, refused.value.code) == (400, "invalid_s3_prefix")
    started = api.create_batch_prediction(model_id, f"s3://{data_bucket}/incoming/", threshold=0,
                                          video={"frames_per_second": 2, "max_frames": 3})
    assert api.last.status_code == 202
    location = api.last.headers["Location"]  # the job's own route, polled here as a caller would
    job = wait_until(lambda: api.request("GET", location), lambda j: j["status"] != "running", timeout=240,
                     interval=1)
    assert job["batch_prediction_id"] == started["batch_prediction_id"]
    assert job["status"] == "succeeded", job
    assert job["counts"] == {"listed": 23, "done": 22, "failed": 1, "frames": 3, "parts": 2}

    with urllib.request.urlopen(job["results"]["manifest_url"], timeout=30) as response:  # presigned
        manifest = json.loads(response.read())
    assert len(manifest["parts"]) == 2 and manifest["counts"] == job["counts"]
    lines = []
    for uri in manifest["parts"]:
        bucket, _, key = uri[len("s3://"):].partition("/")
        lines += [json.loads(line) for line in s3.get_object(Bucket=bucket, Key=key)["Body"].read().splitlines()]
    by_key: dict[str, list[dict]] = {}
    for line in lines:
        by_key.setdefault(line["key"], []).append(line)
    assert len(by_key) == 23
    assert by_key["incoming/readme.txt"][0]["error"]["code"] == "invalid_image"
    frames = by_key["incoming/clip.mp4"]
    assert [(line["frame"], line["timestamp_seconds"]) for line in frames] == [(0, 0.0), (5, 0.5), (10, 1.0)]
    for line in by_key["incoming/00.png"] + frames:
        assert {p["label"] for p in line["predictions"]} == {"circle", "square"}
    assert by_key["incoming/00.png"][0]["image"] == {"width": 40, "height": 30}
