"""End to end through the local stack: S3 upload -> register function -> API -> Step Functions -> Batch
(the training entrypoint as a process) -> record step -> predict function. Nothing here is mocked."""
from __future__ import annotations

import io
import json
import random
import time
import urllib.request
import zipfile

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from PIL import Image
from schemathesis.checks import not_a_server_error

from sightline_client import Conflict, Forbidden, NotFound, UnsupportedMediaType, ValidationError
from sightline_local import synthetic
from support import StackClient, get_without_key, running_stack, wait_until

pytestmark = pytest.mark.e2e

TRAINING_TIMEOUT = 900


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("state"), "e2e-test-key-0123456789") as local:
        yield local


@pytest.fixture(scope="module")
def api(stack):
    return StackClient(stack.config.api_url, stack.api_key)


@pytest.fixture(scope="module")
def datasets(stack, api):
    """A class-folder zip with a corrupt member, and a COCO file uploaded before the images beside it."""
    s3 = stack.client("s3")
    bucket = stack.output("DataBucketName")
    shapes_zip = synthetic.classification_zip(per_class=8, size=64, extra={"circle/corrupt.png": b"\x89PNG\r\n\x1a\nnot really"})
    s3.put_object(Bucket=bucket, Key="datasets/shapes/shapes.zip", Body=shapes_zip)
    document, files = synthetic.coco_dataset(images=16, size=96, seed=3)
    s3.put_object(Bucket=bucket, Key="datasets/boxes/annotations.json", Body=json.dumps(document).encode())
    for name, data in files.items():
        s3.put_object(Bucket=bucket, Key=f"datasets/boxes/{name}", Body=data)
    shapes = wait_until(lambda: api.get_dataset("shapes"), lambda d: d["status"] == "ready" and d["images"] == 16,
                        timeout=120)
    boxes = wait_until(lambda: api.get_dataset("boxes"),
                       lambda d: d["status"] == "ready" and d["images"] == 16 and not d["issues"], timeout=180)
    return {"shapes": shapes, "boxes": boxes, "boxes_document": document}


def test_health_needs_no_key_but_everything_else_does(stack, api):
    api.health()  # sent without the key
    assert "x-api-key" not in api.last.request.headers and api.last.status_code == 200
    denied = get_without_key(stack.config.api_url, "/v1/templates")
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "forbidden"
    with pytest.raises(Forbidden) as wrong:
        StackClient(stack.config.api_url, "wrong").list_templates()
    assert wrong.value.status == 403
    templates = {t["id"]: t for t in api.list_templates()}
    assert templates["mobilenet_v3_small"]["task"] == "classification"
    assert templates["ssdlite320_mobilenet_v3_large"]["task"] == "detection"


def test_class_folders_register_and_the_corrupt_image_is_an_issue(datasets):
    shapes = datasets["shapes"]
    assert shapes["classes"] == {"circle": 8, "square": 8}
    assert any("corrupt.png" in issue["key"] for issue in shapes["issues"]), shapes["issues"]


def test_coco_registers_once_its_images_arrive(datasets):
    boxes = datasets["boxes"]
    expected = len(datasets["boxes_document"]["annotations"])
    assert boxes["annotations"] == expected
    assert sum(boxes["classes"].values()) == expected


def test_a_dataset_is_browsed_by_class_then_deleted_with_its_uploads(stack, api):
    """Images listed with thumbnails a browser can fetch; DELETE goes through the queue to the register function."""
    s3, bucket = stack.client("s3"), stack.output("DataBucketName")
    big = Image.new("RGB", (640, 480), (200, 30, 30))
    s3.put_object(Bucket=bucket, Key="datasets/doomed/red/big.png", Body=synthetic.encode(big))
    s3.put_object(Bucket=bucket, Key="datasets/doomed/blue/small.png",
                  Body=synthetic.encode(Image.new("RGB", (32, 32), (30, 30, 200))))
    wait_until(lambda: api.get_dataset("doomed"), lambda d: d["images"] == 2, timeout=120)

    [red] = api.list_dataset_images("doomed", label="red")["images"]
    with urllib.request.urlopen(red["thumbnail_url"], timeout=30) as response:  # presigned: no credentials
        with Image.open(response) as thumbnail:
            assert (thumbnail.format, thumbnail.size) == ("JPEG", (256, 192))

    api.delete_dataset("doomed")
    assert api.last.status_code == 202
    deadline = time.monotonic() + 120
    while True:
        try:
            api.get_dataset("doomed")
        except NotFound:
            break
        assert time.monotonic() < deadline, "the dataset was not deleted within 120 s"
        time.sleep(1)
    assert s3.list_objects_v2(Bucket=bucket, Prefix="datasets/doomed/")["KeyCount"] == 0


def test_uploads_with_the_api_key_alone_register_and_an_added_image_joins_them(stack, api):
    """A client with the API key and no AWS credentials: presigned PUT with plain HTTP, then one labelled image."""
    archive = synthetic.classification_zip(per_class=3, size=32, seed=11)
    answer = api.create_uploads("keyonly", [{"path": "shapes.zip", "size": len(archive)}])
    assert api.last.status_code == 200
    [upload] = answer["uploads"]
    assert upload["type"] == "single" and upload["url"].startswith(stack.config.endpoint + "/")  # moto's S3
    origin = {"Origin": "https://app.example.com"}
    preflight = urllib.request.Request(upload["url"], method="OPTIONS", headers={
        **origin, "Access-Control-Request-Method": "PUT", "Access-Control-Request-Headers": "content-type"})
    with urllib.request.urlopen(preflight, timeout=30) as response:  # a browser asks the bucket's CORS rules first
        assert response.headers["Access-Control-Allow-Origin"] in ("*", origin["Origin"])
        assert "PUT" in response.headers["Access-Control-Allow-Methods"]
    put = urllib.request.Request(upload["url"], data=archive, method="PUT", headers={**upload["headers"], **origin})
    with urllib.request.urlopen(put, timeout=30) as response:
        assert response.status == 200 and response.headers["ETag"]
        assert "ETag" in response.headers["Access-Control-Expose-Headers"]  # a browser may read it
    dataset = wait_until(lambda: api.get_dataset("keyonly"), lambda d: d["status"] == "ready" and d["images"] == 6,
                         timeout=120)
    assert dataset["classes"] == {"circle": 3, "square": 3}

    image, _ = synthetic.shapes_image(random.Random(31), 32, 32, count=1, labels=("circle",))
    added = api.add_image("keyonly", synthetic.encode(image), label="circle")
    assert api.last.status_code == 202
    assert added["manifest"]["key"].startswith("datasets/keyonly/api/")
    dataset = wait_until(lambda: api.get_dataset("keyonly"), lambda d: d["images"] == 7, timeout=120)
    assert dataset["classes"] == {"circle": 4, "square": 3} and "groundtruth" in dataset["formats"]


def test_a_training_version_shows_its_progress_and_stops_when_cancelled(stack, api, datasets):
    model_id = _train(api, {
        "name": "cancelled", "task": "classification", "datasets": ["shapes"],
        "params": {"epochs": 50, "image_size": 64, "batch_size": 8},
    })
    version = wait_until(lambda: api.get_version(model_id, 1), lambda v: v.get("progress"), timeout=TRAINING_TIMEOUT)
    progress = version["progress"]
    assert progress["epochs"] == 50 and progress["epoch"] >= 1 and progress["eta_seconds"] > 0
    assert len(progress["history"]) == progress["epoch"] and progress["metric"]["name"] == "accuracy"

    cancelled = api.cancel_version(model_id, 1)
    assert (api.last.status_code, cancelled["status"]) == (200, "cancelled"), cancelled
    batch = stack.client("batch")
    [queue] = [q for q in batch.describe_job_queues()["jobQueues"]  # the template's one GPU training queue
               if q["jobQueueName"].endswith("-training")]
    [job] = batch.list_jobs(jobQueue=queue["jobQueueArn"],
                            filters=[{"name": "JOB_NAME", "values": [f"sightline-{model_id}-v1"]}])["jobSummaryList"]
    deadline = time.monotonic() + 60
    while batch.describe_jobs(jobs=[job["jobId"]])["jobs"][0]["status"] not in ("FAILED", "SUCCEEDED"):
        assert time.monotonic() < deadline, "the cancelled job is still running after 60 s"
        time.sleep(1)
    assert batch.describe_jobs(jobs=[job["jobId"]])["jobs"][0]["status"] == "FAILED"
    assert api.get_version(model_id, 1)["status"] == "cancelled"


def test_unknown_model_is_404(api):
    with pytest.raises(NotFound) as unknown:
        api.predict("mdl-doesnotexist", synthetic.encode(Image.new("RGB", (8, 8))))
    assert unknown.value.status == 404
    assert unknown.value.code


def test_bad_model_requests_are_400(api, datasets):
    with pytest.raises(ValidationError) as bad_task:
        api.create_model("x", "segmentation", ["shapes"])
    assert bad_task.value.status == 400 and "task" in bad_task.value.message
    with pytest.raises((ValidationError, NotFound)) as unknown_dataset:
        api.create_model("x", "classification", ["nope"])
    assert unknown_dataset.value.status in (400, 404) and "nope" in unknown_dataset.value.message
    with pytest.raises(ValidationError) as bad_params:
        api.create_model("x", "classification", ["shapes"], params={"epochs": 0})
    assert bad_params.value.status == 400 and "epochs" in bad_params.value.message


def _train(api, body: dict) -> str:
    answer = api.create_model(**body)  # the body's fields are create_model's arguments
    assert api.last.status_code == 202
    assert answer["version"] == 1 and answer["status"] == "training"
    return answer["model_id"]


def _wait_ready(api, model_id: str) -> dict:
    model = wait_until(lambda: api.get_model(model_id), lambda m: m["status"] in ("ready", "failed"),
                       timeout=TRAINING_TIMEOUT, interval=2)
    assert model["status"] == "ready", model.get("failure_reason")
    return model


@pytest.fixture(scope="module")
def trained_classifier(api, datasets) -> str:
    """A classifier of the shapes dataset, trained through the stack; predicting before it is ready is a 409."""
    model_id = _train(api, {
        "name": "shapes classifier", "task": "classification", "datasets": ["shapes"],
        "params": {"epochs": 2, "image_size": 64, "batch_size": 8},
    })
    with pytest.raises(Conflict) as early:
        api.predict(model_id, synthetic.encode(Image.new("RGB", (32, 32))))
    assert early.value.status == 409
    _wait_ready(api, model_id)
    return model_id


def test_classifier_trains_and_predicts(stack, api, trained_classifier):
    model_id = trained_classifier
    model = api.get_model(model_id)
    assert model["serving_version"] == 1 and sorted(model["classes"]) == ["circle", "square"]
    version = api.get_version(model_id, 1)
    assert 0.0 <= version["metrics"]["accuracy"] <= 1.0
    assert version["metrics"]["onnx_check"]["passed"] is True

    image, _ = synthetic.shapes_image(random.Random(11), 80, 60, labels=("square",))
    # threshold 0 ranks every class (without one, each class is cut at its assumed threshold: below).
    answer = api.predict(model_id, synthetic.encode(image, "JPEG"), threshold=0)  # the JPEG as the body
    assert api.last.request.headers["Content-Type"] == "image/jpeg" and api.last.status_code == 200
    assert answer["model_id"] == model_id and answer["version"] == 1 and answer["task"] == "classification"
    assert answer["image"] == {"width": 80, "height": 60}
    assert {p["label"] for p in answer["predictions"]} <= {"circle", "square"}
    assert all("box" not in p for p in answer["predictions"])
    scores = [p["score"] for p in answer["predictions"]]
    assert scores == sorted(scores, reverse=True) and abs(sum(scores) - 1.0) < 1e-3

    # The version's labels.json has each class's assumed threshold; predict's default answers only those over it.
    artifacts = api.get_artifacts(model_id, 1)["artifacts"]
    assert {"model.onnx", "labels.json", "metrics.json", "card.json"} <= {entry["name"] for entry in artifacts}
    thresholds = next(json.loads(urllib.request.urlopen(entry["url"], timeout=10).read())
                      for entry in artifacts if entry["name"] == "labels.json").get("thresholds", {})
    default = api.predict(model_id, synthetic.encode(image, "JPEG"))
    assert api.last.status_code == 200
    for prediction in default["predictions"]:
        assert prediction["score"] >= thresholds.get(prediction["label"], 0.0) - 1e-6

    as_json = api.predict(model_id, synthetic.encode(image), max_results=1, threshold=0, as_json=True)
    assert api.last.status_code == 200 and len(as_json["predictions"]) == 1

    # Bodies the client would refuse to send (it sniffs the image's type): sent as they are through request().
    predict = f"/v1/models/{model_id}/predict"
    with pytest.raises(ValidationError) as not_an_image:
        api.request("POST", predict, data=b"this is not an image", content_type="image/png", read_only_post=True)
    assert not_an_image.value.status == 400
    assert "image" in not_an_image.value.message
    with pytest.raises(UnsupportedMediaType) as wrong_type:
        api.request("POST", predict, data=b"hello", content_type="text/plain", read_only_post=True)
    assert wrong_type.value.status == 415
    _other_ways_to_send_images(stack, api, model_id, image)


def _other_ways_to_send_images(stack, api, model_id: str, image) -> None:
    """Through the API front as API Gateway passes them (binary media types): a multipart form with a zip, a zip
    body, an S3 object of the data bucket, and the several-models route."""
    jpeg = synthetic.encode(image, "JPEG")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as members:
        members.writestr("one.jpg", jpeg)
        members.writestr("two.png", synthetic.encode(image))
        members.writestr("readme.txt", b"not an image")
    by_form = api.predict(model_id, archive.getvalue(), threshold=0, form=True)
    assert api.last.request.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    assert api.last.status_code == 200
    entries = by_form["images"]
    assert [entry["name"] for entry in entries] == ["one.jpg", "two.png", "readme.txt"]
    assert len(entries[0]["predictions"]) == 2 and entries[2]["error"]["code"] == "invalid_image"

    by_zip = api.predict(model_id, archive.getvalue(), max_results=1)
    assert api.last.request.headers["Content-Type"] == "application/zip"
    assert api.last.status_code == 200 and [len(e.get("predictions", [])) for e in by_zip["images"]] == [1, 1, 0]

    bucket = stack.output("DataBucketName")
    stack.client("s3").put_object(Bucket=bucket, Key="incoming/shape.jpg", Body=jpeg)
    by_uri = api.predict(model_id, s3_uri=f"s3://{bucket}/incoming/shape.jpg", threshold=0)
    assert api.last.status_code == 200 and by_uri["predictions"] == entries[0]["predictions"]
    with pytest.raises(ValidationError) as elsewhere:
        api.predict(model_id, s3_uri="s3://another-bucket/shape.jpg")
    assert (elsewhere.value.status, elsewhere.value.code) == (400, "invalid_s3_uri")

    several = api.predict_many([model_id, "mdl-doesnotexist"], s3_uri=f"s3://{bucket}/incoming/shape.jpg",
                               threshold=0, classes=["square"])
    assert api.last.status_code == 200
    first, unknown = several["results"]
    assert [p["label"] for p in first["predictions"]] == ["square"]
    assert unknown == {"model_id": "mdl-doesnotexist", "error": unknown["error"]} and unknown["error"]["code"] == "model_not_found"


def test_a_trained_classifier_is_evaluated_on_a_dataset_and_compared(api, datasets):
    """POST .../evaluations submits the CPU Batch job (here a local process of ``python -m sightline_training
    evaluate``); GET settles the evaluation from the evaluation.json it wrote."""
    model_id = _train(api, {
        "name": "shapes to evaluate", "task": "classification", "datasets": ["shapes"],
        "params": {"epochs": 1, "image_size": 32, "batch_size": 8},
    })
    _wait_ready(api, model_id)
    with pytest.raises(ValidationError) as refused:
        api.create_evaluation(model_id, 1, "boxes")
    assert (refused.value.status, refused.value.code) == (400, "no_evaluation_data")
    started = api.create_evaluation(model_id, 1, "shapes")
    assert api.last.status_code == 202
    # Raises (evaluation_failed, with the failure reason) unless the evaluation succeeds.
    done = api.wait_for_evaluation(started["evaluation_id"], timeout=TRAINING_TIMEOUT, interval=2)
    # The 16 images of "shapes" less those version 1 trained on: only its validation images are scored.
    excluded = started["excluded_training_images"]
    assert 0 < excluded < 16 and done["excluded_training_images"] == excluded
    assert done["images"] == {"total": 16 - excluded, "evaluated": 16 - excluded, "unknown_class": 0,
                              "partly_unknown": 0}
    assert done["class_mismatch"] == {"dataset_only": [], "model_only": []}
    assert 0.0 <= done["metrics"]["accuracy"] <= 1.0
    report = json.loads(urllib.request.urlopen(done["report"]["url"], timeout=10).read())
    assert report["format"] == "sightline.evaluation/v1" and set(report["per_class"]) == {"circle", "square"}
    compared = api.compare_evaluations([started["evaluation_id"]])
    assert {"metric": "accuracy", "values": [done["metrics"]["accuracy"]]} in compared["rows"]


def test_detector_trains_and_returns_boxes_inside_the_image(api, datasets):
    model_id = _train(api, {
        "name": "boxes detector", "task": "detection", "datasets": ["boxes"],
        "params": {"epochs": 1, "batch_size": 4},
    })
    model = _wait_ready(api, model_id)
    version = api.get_version(model_id, model["serving_version"])
    assert {"map_50", "map_50_95"} <= set(version["metrics"])
    assert version["artifacts"]["model"].endswith("model.onnx")

    image, _ = synthetic.shapes_image(random.Random(5), 150, 100, count=2)
    answer = api.predict(model_id, synthetic.encode(image, "PNG"), threshold=0, max_results=10)
    assert api.last.status_code == 200
    assert answer["task"] == "detection" and answer["image"] == {"width": 150, "height": 100}
    assert len(answer["predictions"]) <= 10
    for prediction in answer["predictions"]:
        assert prediction["label"] in ("circle", "square")
        assert 0.0 <= prediction["score"] <= 1.0
        box = prediction["box"]
        assert 0 <= box["x_min"] <= box["x_max"] <= 150
        assert 0 <= box["y_min"] <= box["y_max"] <= 100


def test_eventbridge_rules_reach_step_functions_targets(stack):
    """moto's EventBridge delivers to no Lambda or Step Functions target; the local stack does, as AWS would."""
    sfn = stack.client("stepfunctions")
    events = stack.client("events")
    machine = sfn.create_state_machine(
        name="on-dataset-updated",
        definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}),
        roleArn="arn:aws:iam::123456789012:role/events-target",
    )["stateMachineArn"]
    bus = stack.output("EventBusName")
    events.put_rule(Name="dataset-updated", EventBusName=bus, EventPattern=json.dumps({"source": ["sightline"], "detail-type": ["DatasetUpdated"]}))
    events.put_targets(Rule="dataset-updated", EventBusName=bus, Targets=[{"Id": "sfn", "Arn": machine}])

    stack.client("s3").put_object(
        Bucket=stack.output("DataBucketName"), Key="datasets/trigger/circle/one.png",
        Body=synthetic.encode(Image.new("RGB", (16, 16), (200, 30, 30))),
    )
    deadline = time.time() + 60
    executions = []
    while time.time() < deadline and not executions:
        executions = sfn.list_executions(stateMachineArn=machine)["executions"]
        time.sleep(0.5)
    assert executions, "the DatasetUpdated event never reached the Step Functions target"
    started = json.loads(sfn.describe_execution(executionArn=executions[0]["executionArn"])["input"])
    assert started["detail-type"] == "DatasetUpdated" and started["detail"]["name"] == "trigger"


def _ready_model_named(api, name: str) -> str | None:
    return next((m["model_id"] for m in api.list_models() if m["name"] == name and m["status"] == "ready"), None)


def _wait_version_ready(api, model_id: str, version: int) -> dict:
    """The version once ready; TrainingFailed (with its failure reason) when it fails."""
    return api.wait_for_version(model_id, version, TRAINING_TIMEOUT, interval=1)


def test_a_retrain_serves_the_old_version_until_the_new_one_is_at_least_as_good(api, datasets):
    model_id = _ready_model_named(api, "shapes classifier") or _train(api, {
        "name": "shapes classifier", "task": "classification", "datasets": ["shapes"],
        "params": {"epochs": 1, "image_size": 64, "batch_size": 8},
    })
    first = _wait_ready(api, model_id)
    assert first["serving_version"] == 1
    image = synthetic.encode(synthetic.shapes_image(random.Random(3), 64, 64, labels=("circle",))[0])

    retrain = api.create_version(model_id, params={"epochs": 1})
    assert api.last.status_code == 202
    assert retrain == {"model_id": model_id, "version": 2, "status": "training"}
    again = api.create_version(model_id)  # while 2 trains: queued, starts when 2 ends
    assert api.last.status_code == 202 and again["status"] == "queued" and again["queued_after"] == 2

    answered_while_training = 0
    while api.get_version(model_id, 2)["status"] == "training":
        predicted = api.predict(model_id, image)
        assert api.last.status_code == 200
        model = api.get_model(model_id)
        if api.get_version(model_id, 2)["status"] == "training":
            assert predicted["version"] == 1
            assert (model["status"], model["serving_version"], model["latest_version"]) == ("retraining", 1, 2)
            answered_while_training += 1
        time.sleep(0.5)
    assert answered_while_training, "version 2 finished before a prediction could be made while it trained"

    second = _wait_version_ready(api, model_id, 2)
    assert second["trigger"] == {"type": "api"} and second["params"]["epochs"] == 1
    # The request queued while 2 trained started when 2 ended: one follow-up, marked as queued.
    # (The record step marks 2 ready, then starts 3: wait for it.)
    third = wait_until(lambda: api.get_version(model_id, 3), lambda v: "trigger" in v, timeout=60, interval=0.5)
    assert third["trigger"] == {"type": "api", "queued": True}
    versions = api.list_versions(model_id)["versions"]
    assert [v["version"] for v in versions] == [3, 2, 1]
    old, new = versions[2]["metrics"], second["metrics"]
    assert old["primary_metric"] == new["primary_metric"] == "accuracy"
    promoted = new["accuracy"] >= old["accuracy"]
    model = api.get_model(model_id)
    assert model["serving_version"] == (2 if promoted else 1) and model["queued_version"] is None
    assert second["promoted"] is promoted
    # Let 3 finish: the local stack runs one training job at a time.
    _wait_version_ready(api, model_id, 3)
    model = api.get_model(model_id)
    # A warm predict container remembers the serving version for SERVING_CACHE_SECONDS (5): a promotion is
    # answered within that, and never by a version that does not serve.
    deadline = time.monotonic() + 5 + 5
    while True:
        predicted = api.predict(model_id, image)
        assert api.last.status_code == 200 and predicted["version"] in {1, 2, 3}
        if predicted["version"] == model["serving_version"] or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert predicted["version"] == model["serving_version"]


def test_new_data_retrains_a_model_that_asks_for_it(stack, api):
    s3 = stack.client("s3")
    bucket = stack.output("DataBucketName")
    s3.put_object(Bucket=bucket, Key="datasets/growing/shapes.zip", Body=synthetic.classification_zip(per_class=5, size=32, seed=7))
    wait_until(lambda: api.get_dataset("growing"), lambda d: d["status"] == "ready" and d["images"] == 10, timeout=120)
    model_id = _train(api, {
        "name": "growing classifier", "task": "classification", "datasets": ["growing"], "retrain_on_new_data": True,
        "params": {"epochs": 1, "image_size": 32, "batch_size": 4},
    })
    assert api.get_model(model_id)["retrain_on_new_data"] is True
    _wait_ready(api, model_id)  # one run at a time: data arriving while version 1 trains would start nothing

    extra, _ = synthetic.shapes_image(random.Random(21), 32, 32, labels=("square",))
    s3.put_object(Bucket=bucket, Key="datasets/growing/square/extra.png", Body=synthetic.encode(extra))
    model = wait_until(lambda: api.get_model(model_id), lambda m: m["latest_version"] >= 2, timeout=120, interval=0.5)
    assert model["latest_version"] == 2 and model["serving_version"] == 1 and model["status"] in ("retraining", "ready")
    version = api.get_version(model_id, 2)
    assert version["trigger"] == {"type": "dataset_updated", "dataset": "growing"}
    # Let it finish: the local stack runs one training job at a time and stops with the module.
    _wait_version_ready(api, model_id, 2)
    assert api.get_model(model_id)["latest_version"] == 2


def _running_trainers(stack) -> list:
    with stack._job_runner._lock:
        return list(stack._job_runner._running)


def test_a_trainer_killed_mid_run_fails_its_version_and_the_serving_version_keeps_serving(stack, api, datasets):
    """The trainer process dies (SIGKILL, as an out-of-memory kill would) half way through its epochs: the version
    ends failed with a reason, never stuck training, and predictions keep coming from the serving version. Then an
    execution stopped behind the API's back (ABORTED) is settled by the reconciler from Step Functions' own status
    change event: its version becomes cancelled."""
    import os
    import signal

    model_id = _ready_model_named(api, "shapes classifier") or _train(api, {
        "name": "shapes classifier", "task": "classification", "datasets": ["shapes"],
        "params": {"epochs": 1, "image_size": 64, "batch_size": 8},
    })
    model = _wait_ready(api, model_id)
    serving = model["serving_version"]
    image = synthetic.encode(synthetic.shapes_image(random.Random(4), 64, 64, labels=("square",))[0])

    killed = api.create_version(model_id, params={"epochs": 50})["version"]
    assert api.last.status_code == 202
    wait_until(lambda: api.get_version(model_id, killed), lambda v: v.get("progress"), timeout=TRAINING_TIMEOUT)
    [trainer] = _running_trainers(stack)
    os.killpg(trainer.pid, signal.SIGKILL)

    version = wait_until(lambda: api.get_version(model_id, killed), lambda v: v["status"] != "training",
                         timeout=120, interval=1)
    assert version["status"] == "failed" and version["failure_reason"], version
    model = api.get_model(model_id)
    assert (model["status"], model["serving_version"]) == ("ready", serving)
    predicted = api.predict(model_id, image)
    assert api.last.status_code == 200 and predicted["version"] == serving

    # An execution stopped in Step Functions itself: only its status change event can settle the version.
    stopped = api.create_version(model_id, params={"epochs": 50})["version"]
    assert api.last.status_code == 202
    version = wait_until(lambda: api.get_version(model_id, stopped), lambda v: v.get("progress"),
                         timeout=TRAINING_TIMEOUT)
    stack.client("stepfunctions").stop_execution(executionArn=version["execution_arn"], cause="stopped by hand")
    version = wait_until(lambda: api.get_version(model_id, stopped), lambda v: v["status"] != "training",
                         timeout=120, interval=1)
    assert version["status"] == "cancelled" and "stopped" in version["failure_reason"], version
    deadline = time.monotonic() + 60
    while _running_trainers(stack):  # the reconciler terminates the job the stopped execution left running
        assert time.monotonic() < deadline, "the stopped execution's training job still runs after 60 s"
        time.sleep(1)
    assert api.get_model(model_id)["serving_version"] == serving


# Every operation of the API's own description, called with what it allows and what it does not (schemathesis
# from docs/openapi.yaml), a few examples each: every answer is one the description lists, never a 500. Predict
# operations are pointed at a trained model, so requests reach the image decoder and the model; operations that
# change or delete things get the ids schemathesis makes up (404s), so the other tests' models stay.
API_DESCRIPTION = schemathesis.openapi.from_path(str(Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"))


@API_DESCRIPTION.parametrize()
@settings(max_examples=4, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck),
          phases=[Phase.explicit, Phase.generate])
def test_the_api_answers_anything_its_description_allows_without_a_server_error(case, stack, trained_classifier):
    if case.method == "POST" and case.path == "/v1/models/{id}/predict":
        case.path_parameters = {**(case.path_parameters or {}), "id": trained_classifier}
    response = case.call(base_url=stack.config.api_url, headers={"x-api-key": stack.api_key}, timeout=120)
    case.validate_response(response, checks=[not_a_server_error])
