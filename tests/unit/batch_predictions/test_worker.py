"""One batch of a batch prediction: every object a line (images, errors), a video a line per sampled frame, the
part written once per batch and counted once."""
from __future__ import annotations

import json

import pytest
from batch_helpers import helpers

from sightline import batch_prediction_worker as worker
from sightline import keys


def _batch_input(model_id: str, aws_resources, **overrides) -> dict:
    artifacts = {"model": f"models/{model_id}/v1/model.onnx", "labels": f"models/{model_id}/v1/labels.json"}
    return {"batch_prediction_id": "b" * 32, "bucket": aws_resources.data_bucket, "model_id": model_id,
            "version": 1, "artifacts": artifacts, "options": {}, "video": {"frames_per_second": 1.0,
                                                                        "max_frames": 300}, **overrides}


def _put(aws_resources, key: str, body: bytes) -> dict:
    aws_resources.s3.put_object(Bucket=aws_resources.data_bucket, Key=key, Body=body)
    return {"Key": key, "Size": len(body), "Etag": '"x"', "LastModified": 0, "StorageClass": "STANDARD"}


def _start_record(aws_resources) -> None:
    aws_resources.table.put_item(Item={"pk": keys.batch_prediction_pk("b" * 32), "sk": keys.META,
                                       "status": "running", "objects_done": 0, "objects_failed": 0})


def _lines(aws_resources, part_key: str) -> list[dict]:
    body = aws_resources.s3.get_object(Bucket=aws_resources.artifact_bucket, Key=part_key)["Body"].read()
    return [json.loads(line) for line in body.decode().splitlines()]


def _record(aws_resources) -> dict:
    return aws_resources.table.get_item(Key={"pk": keys.batch_prediction_pk("b" * 32), "sk": keys.META})["Item"]


def test_a_batch_of_images_videos_and_junk_is_one_part_of_lines(aws_resources, ready_classifier, video_file):
    _start_record(aws_resources)
    items = [
        _put(aws_resources, "in/red.png", helpers.encode(helpers.solid((250, 10, 10)))),
        _put(aws_resources, "in/green.jpg", helpers.encode(helpers.solid((10, 250, 10)), "JPEG")),
        _put(aws_resources, "in/notes.txt", b"not an image"),
        _put(aws_resources, "in/clip.mp4", video_file(seconds=2.0, rate=10, colour=(20, 20, 230)).read_bytes()),
        # A video whose name does not say so: recognised by its content.
        _put(aws_resources, "in/clip-without-extension", video_file("other.mp4", seconds=1.0, rate=4).read_bytes()),
    ]
    summary = worker.predict_batch({"BatchInput": _batch_input(ready_classifier, aws_resources), "Items": items},
                                   lambda: 900.0)
    assert summary["objects"] == 5 and summary["done"] == 4 and summary["failed"] == 1 and summary["frames"] == 3
    lines = _lines(aws_resources, summary["part"])
    by_key: dict[str, list[dict]] = {}
    for line in lines:
        by_key.setdefault(line["key"], []).append(line)
    assert by_key["in/red.png"][0]["predictions"][0]["label"] == "red"
    assert by_key["in/red.png"][0]["image"] == {"width": 30, "height": 20}
    assert by_key["in/green.jpg"][0]["predictions"][0]["label"] == "green"
    assert by_key["in/notes.txt"] == [{"key": "in/notes.txt", "error": {
        "code": "invalid_image", "message": by_key["in/notes.txt"][0]["error"]["message"]}}]
    frames = by_key["in/clip.mp4"]
    assert [(line["frame"], line["timestamp_seconds"]) for line in frames] == [(0, 0.0), (10, 1.0)]
    assert all(line["predictions"][0]["label"] == "blue" for line in frames)
    assert [line["frame"] for line in by_key["in/clip-without-extension"]] == [0]
    record = _record(aws_resources)
    assert (record["objects_done"], record["objects_failed"], record["frames"], record["parts"]) == (4, 1, 3, 1)


def test_options_apply_to_every_line(aws_resources, ready_classifier):
    _start_record(aws_resources)
    items = [_put(aws_resources, "in/red.png", helpers.encode(helpers.solid((250, 10, 10))))]
    batch_input = _batch_input(ready_classifier, aws_resources,
                               options={"threshold": 0.0, "max_results": 1, "classes": ["green", "blue"]})
    summary = worker.predict_batch({"BatchInput": batch_input, "Items": items}, lambda: 900.0)
    predictions = _lines(aws_resources, summary["part"])[0]["predictions"]
    assert [p["label"] for p in predictions] == ["green"] or [p["label"] for p in predictions] == ["blue"]
    assert len(predictions) == 1


def test_an_image_over_the_limit_is_an_error_line_without_reading_it(aws_resources, ready_classifier, monkeypatch):
    _start_record(aws_resources)
    monkeypatch.setenv("MAX_IMAGE_BYTES", "100")
    from sightline.config import get_settings

    get_settings.cache_clear()
    items = [_put(aws_resources, "in/big.png", helpers.encode(helpers.solid((250, 10, 10), (200, 200))))]
    summary = worker.predict_batch({"BatchInput": _batch_input(ready_classifier, aws_resources), "Items": items},
                                   lambda: 900.0)
    assert _lines(aws_resources, summary["part"])[0]["error"]["code"] == "image_too_large"


def test_a_deleted_object_is_an_error_line(aws_resources, ready_classifier):
    _start_record(aws_resources)
    items = [{"Key": "in/gone.png", "Size": 10}]
    summary = worker.predict_batch({"BatchInput": _batch_input(ready_classifier, aws_resources), "Items": items},
                                   lambda: 900.0)
    assert _lines(aws_resources, summary["part"])[0]["error"]["code"] == "object_not_found"


def test_objects_left_when_time_runs_out_are_error_lines(aws_resources, ready_classifier):
    _start_record(aws_resources)
    items = [_put(aws_resources, f"in/{i}.png", helpers.encode(helpers.solid((250, 10, 10)))) for i in range(2)]
    summary = worker.predict_batch({"BatchInput": _batch_input(ready_classifier, aws_resources), "Items": items},
                                   lambda: worker.RESERVE_SECONDS - 1)
    assert [line["error"]["code"] for line in _lines(aws_resources, summary["part"])] == ["time_limit"] * 2
    assert summary["failed"] == 2


def test_a_retried_batch_overwrites_its_part_and_counts_once(aws_resources, ready_classifier):
    _start_record(aws_resources)
    items = [_put(aws_resources, "in/red.png", helpers.encode(helpers.solid((250, 10, 10))))]
    event = {"BatchInput": _batch_input(ready_classifier, aws_resources), "Items": items}
    first = worker.predict_batch(event, lambda: 900.0)
    second = worker.predict_batch(event, lambda: 900.0)
    assert first["part"] == second["part"] and second["already_recorded"] is True
    record = _record(aws_resources)
    assert (record["objects_done"], record["parts"]) == (1, 1)


def test_a_failed_batch_gives_each_object_an_error_line(aws_resources, ready_classifier):
    _start_record(aws_resources)
    items = [{"Key": "in/a.png", "Size": 5}, {"Key": "in/b.png", "Size": 5}]
    event = {"BatchInput": _batch_input(ready_classifier, aws_resources), "Items": items,
             "error": {"Error": "Sandbox.Timedout", "Cause": "Task timed out after 900.00 seconds"}}
    summary = worker.record_batch_failure(event)
    lines = _lines(aws_resources, summary["part"])
    assert [line["key"] for line in lines] == ["in/a.png", "in/b.png"]
    assert {line["error"]["code"] for line in lines} == {"batch_failed"}
    assert "Sandbox.Timedout" in lines[0]["error"]["message"]
    assert _record(aws_resources)["objects_failed"] == 2


def test_a_failure_record_never_replaces_a_batch_that_was_recorded(aws_resources, ready_classifier):
    _start_record(aws_resources)
    items = [_put(aws_resources, "in/red.png", helpers.encode(helpers.solid((250, 10, 10))))]
    event = {"BatchInput": _batch_input(ready_classifier, aws_resources), "Items": items}
    recorded = worker.predict_batch(event, lambda: 900.0)
    answer = worker.record_batch_failure({**event, "error": {"Error": "States.Timeout", "Cause": ""}})
    assert answer["already_recorded"] is True
    assert "predictions" in _lines(aws_resources, recorded["part"])[0]
    assert _record(aws_resources)["objects_failed"] == 0


def test_the_handler_sends_a_caught_error_to_the_failure_record(aws_resources, ready_classifier):
    from support import LambdaContext, load_function

    _start_record(aws_resources)
    app = load_function("batch_predict")
    event = {"BatchInput": _batch_input(ready_classifier, aws_resources), "Items": [{"Key": "in/x.png", "Size": 1}],
             "error": {"Error": "Lambda.Unknown", "Cause": "boom"}}
    answer = app.predict_batch(event, LambdaContext())
    assert _lines(aws_resources, answer["part"])[0]["error"]["code"] == "batch_failed"


@pytest.mark.parametrize("keys_a, keys_b, same", [(["a", "b"], ["a", "b"], True), (["a", "b"], ["a", "c"], False)])
def test_part_ids_follow_the_batch_keys(keys_a, keys_b, same):
    ids = [worker.part_id([{"Key": key} for key in batch]) for batch in (keys_a, keys_b)]
    assert (ids[0] == ids[1]) is same


def test_a_batch_loads_exactly_the_model_its_version_pinned(aws_resources, ready_classifier):
    from sightline.inference import ModelArtifactError

    _start_record(aws_resources)
    items = [_put(aws_resources, "in/red.png", helpers.encode(helpers.solid((250, 10, 10))))]
    swapped = {"model": {"sha256": "0" * 64}}  # not the hash of the model.onnx in the bucket
    with pytest.raises(ModelArtifactError):
        worker.predict_batch({"BatchInput": _batch_input(ready_classifier, aws_resources, integrity=swapped),
                              "Items": items}, lambda: 900.0)
