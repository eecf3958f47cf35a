from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from PIL import Image

from sightline import contract, keys, model_registry, serving
from sightline.config import get_settings
from sightline.errors import SightlineError
from sightline.predict_request import predict_request
from predict_helpers import classifier_labels, detector_labels, encode, png_claiming, solid, upload_version

WHITE = (255, 255, 255)


@pytest.fixture
def classifier_id(seed_model, classifier_onnx) -> str:
    return seed_model(classifier_onnx, classifier_labels())


@pytest.fixture
def detector_id(seed_model, detector_onnx) -> str:
    return seed_model(detector_onnx, detector_labels())


def as_json(image: bytes, **fields) -> bytes:
    return json.dumps({"image": base64.b64encode(image).decode(), **fields}).encode()


def refused(model_id: str, body: bytes, content_type: str | None, query: dict | None = None) -> SightlineError:
    with pytest.raises(SightlineError) as raised:
        predict_request(model_id, body, content_type, query or {})
    return raised.value


def test_a_raw_png_is_classified(classifier_id):
    answer = predict_request(classifier_id, encode(solid((220, 30, 60), (30, 20))), "image/png", {})
    assert answer["model_id"] == classifier_id
    assert answer["version"] == 1
    assert answer["task"] == "classification"
    assert answer["image"] == {"width": 30, "height": 20}
    assert [p["label"] for p in answer["predictions"]] == ["red", "blue", "green"]
    assert all("box" not in p for p in answer["predictions"])
    json.dumps(answer)  # the answer is plain JSON


def test_a_json_body_carries_the_image_and_the_options(classifier_id):
    body = as_json(encode(solid((220, 30, 60)), "JPEG"), max_results=1, threshold=0.2)
    answer = predict_request(classifier_id, body, "application/json; charset=utf-8", {})
    assert [p["label"] for p in answer["predictions"]] == ["red"]


def test_json_fields_win_over_the_query_string(classifier_id):
    body = as_json(encode(solid((220, 30, 60))), max_results=2)
    answer = predict_request(classifier_id, body, "application/json", {"max_results": "1"})
    assert len(answer["predictions"]) == 2
    answer = predict_request(classifier_id, as_json(encode(solid((220, 30, 60)))), "application/json", {"max_results": "1"})
    assert len(answer["predictions"]) == 1


def test_a_data_url_and_wrapped_base64_are_accepted(classifier_id):
    encoded = base64.encodebytes(encode(solid((20, 30, 220)))).decode()  # wrapped at 76 characters
    body = json.dumps({"image": f"data:image/png;base64,{encoded}"}).encode()
    assert predict_request(classifier_id, body, "application/json", {})["predictions"][0]["label"] == "blue"


def test_detections_use_the_task_defaults_and_the_original_pixels(detector_id):
    answer = predict_request(detector_id, encode(solid(WHITE, (300, 100))), "image/png", {})
    assert answer["task"] == "detection"
    assert answer["image"] == {"width": 300, "height": 100}
    # default threshold 0.5: the 0.3 candidate is left out
    assert [(p["label"], p["score"]) for p in answer["predictions"]] == [
        ("circle", pytest.approx(0.9, abs=1e-5)), ("square", pytest.approx(0.7, abs=1e-5)),
        ("square", pytest.approx(0.6, abs=1e-5)),
    ]
    assert answer["predictions"][2]["box"] == {
        "x_min": pytest.approx(40 * 300 / 64, abs=0.01), "y_min": pytest.approx(16 * 100 / 32, abs=0.01),
        "x_max": 300.0, "y_max": 100.0,
    }


def test_a_big_jpeg_decoded_at_a_reduced_scale_is_answered_in_the_pixels_sent(detector_id):
    # 1200x400 against a 64x32 input: the JPEG is decoded at 1/8 scale, yet sizes and boxes are the sent image's.
    answer = predict_request(detector_id, encode(solid(WHITE, (1200, 400)), "JPEG", quality=95), "image/jpeg", {})
    assert answer["image"] == {"width": 1200, "height": 400}
    assert answer["predictions"][2]["box"] == {
        "x_min": pytest.approx(40 * 1200 / 64, abs=0.01), "y_min": pytest.approx(16 * 400 / 32, abs=0.01),
        "x_max": 1200.0, "y_max": 400.0,
    }


def test_the_query_string_sets_threshold_and_max_results_for_a_raw_body(detector_id):
    body = encode(solid(WHITE, (300, 100)))
    answer = predict_request(detector_id, body, "image/png", {"threshold": "0.2", "max_results": "4"})
    assert [p["score"] for p in answer["predictions"]] == pytest.approx([0.9, 0.7, 0.6, 0.3], abs=1e-5)
    answer = predict_request(detector_id, body, "image/png", {"max_results": "1"})
    assert len(answer["predictions"]) == 1


def test_boxes_follow_exif_orientation(detector_id):
    # Stored 100 wide and 300 tall, shown turned a quarter: 300 x 100 as the caller sees it.
    exif = Image.Exif()
    exif[0x0112] = 6
    body = encode(solid(WHITE, (100, 300)), "JPEG", exif=exif)
    answer = predict_request(detector_id, body, "image/jpeg", {})
    assert answer["image"] == {"width": 300, "height": 100}
    assert answer["predictions"][2]["box"]["x_max"] == 300.0
    assert answer["predictions"][2]["box"]["y_max"] == 100.0


def test_a_detector_that_sees_nothing_answers_no_predictions(detector_id):
    answer = predict_request(detector_id, encode(solid((0, 0, 0), (40, 40))), "image/png", {"threshold": "0"})
    assert answer["predictions"] == []


def test_rgba_and_greyscale_images_are_accepted(classifier_id):
    rgba = encode(Image.new("RGBA", (16, 16), (20, 200, 20, 100)))
    assert predict_request(classifier_id, rgba, "image/png", {})["predictions"][0]["label"] == "green"
    grey = predict_request(classifier_id, encode(Image.new("L", (16, 16), 77), "JPEG"), "image/jpeg", {})
    assert [p["score"] for p in grey["predictions"]] == pytest.approx([1 / 3] * 3, abs=1e-3)


# (body, content type, query string, status, code)
UNUSABLE_REQUESTS = [
    (b"a picture of a cat", "text/plain", None, 415, "unsupported_media_type"),
    (b"a picture of a cat", None, None, 415, "unsupported_media_type"),
    (b"image=...", "application/x-www-form-urlencoded", None, 415, "unsupported_media_type"),
    (b"{not json", "application/json", None, 400, "invalid_json"),
    (b'["image"]', "application/json", None, 400, "invalid_json"),
    (b"[" * 100_000, "application/json", None, 400, "invalid_json"),  # once a RecursionError and a 500
    (b'{"image": ' + b"{" * 100_000, "application/json", None, 400, "invalid_json"),
    (b'{"threshold": 0.5}', "application/json", None, 400, "missing_image"),
    (b'{"image": 42}', "application/json", None, 400, "missing_image"),
    (b'{"image": "@@not base64@@"}', "application/json", None, 400, "invalid_base64"),
    (as_json(b"GIF? no."), "application/json", None, 400, "invalid_image"),
    (b"this is not a png", "image/png", None, 400, "invalid_image"),
    (b"", "image/png", None, 400, "invalid_image"),
    (as_json(encode(solid(WHITE)), threshold=1.5), "application/json", None, 400, "invalid_threshold"),
    (as_json(encode(solid(WHITE)), threshold=-0.1), "application/json", None, 400, "invalid_threshold"),
    (as_json(encode(solid(WHITE)), threshold="0.5"), "application/json", None, 400, "invalid_threshold"),
    (as_json(encode(solid(WHITE)), threshold=True), "application/json", None, 400, "invalid_threshold"),
    (encode(solid(WHITE)), "image/png", {"threshold": "high"}, 400, "invalid_threshold"),
    (encode(solid(WHITE)), "image/png", {"threshold": "nan"}, 400, "invalid_threshold"),
    (as_json(encode(solid(WHITE)), max_results=0), "application/json", None, 400, "invalid_max_results"),
    (as_json(encode(solid(WHITE)), max_results=101), "application/json", None, 400, "invalid_max_results"),
    (as_json(encode(solid(WHITE)), max_results=2.5), "application/json", None, 400, "invalid_max_results"),
    (encode(solid(WHITE)), "image/png", {"max_results": "many"}, 400, "invalid_max_results"),
    (png_claiming(10_000, 10_000), "image/png", None, 413, "image_too_large"),
]


def test_unusable_requests_are_refused_with_a_reason(classifier_id, subtests):
    # One model for every case: seeding one per case would cost more than the cases themselves.
    for body, content_type, query, status, code in UNUSABLE_REQUESTS:
        with subtests.test(content_type=content_type, query=query, code=code, body=body[:40]):
            error = refused(classifier_id, body, content_type, query)
            assert (error.status, error.code) == (status, code)
            assert error.message


def test_a_non_image_says_so(classifier_id):
    error = refused(classifier_id, b"%PDF-1.7 ...", "image/jpeg")
    assert error.message.startswith("body is not a readable JPEG or PNG image: ")


def test_bodies_over_the_size_limit_are_too_large(classifier_id, monkeypatch):
    from sightline.config import get_settings

    monkeypatch.setenv("MAX_IMAGE_BYTES", "2000")
    get_settings.cache_clear()
    noise = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    big = encode(Image.fromarray(noise))  # noise does not compress
    assert len(big) > 2000
    assert refused(classifier_id, big, "image/png").status == 413
    assert refused(classifier_id, as_json(big), "application/json").status == 413
    small = encode(solid(WHITE, (8, 8)))
    assert predict_request(classifier_id, small, "image/png", {})["image"] == {"width": 8, "height": 8}


def test_an_unknown_model_is_not_found(aws_resources):
    error = refused("mdl-000000000000", encode(solid(WHITE)), "image/png")
    assert error.status == 404


@pytest.mark.parametrize("status", ["training", "failed"])
def test_a_model_without_a_ready_version_is_a_conflict(seed_model, status):
    model_id = seed_model(None, classifier_labels(), status=status)
    error = refused(model_id, encode(solid(WHITE)), "image/png")
    assert (error.status, error.code) == (409, "model_not_ready")


def test_a_warm_container_does_not_fetch_the_model_again(aws_resources, classifier_id):
    body = encode(solid((20, 30, 220)))
    first = predict_request(classifier_id, body, "image/png", {})
    for key in ("model.onnx", "labels.json"):
        aws_resources.s3.delete_object(
            Bucket=aws_resources.artifact_bucket, Key=contract.version_prefix(classifier_id, 1) + key
        )
    assert predict_request(classifier_id, body, "image/png", {}) == first


def test_a_promoted_version_answers_once_the_remembered_lookup_expires(aws_resources, classifier_id, classifier_onnx,
                                                                       monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(serving, "_cache", serving.ServingCache(clock=lambda: now[0]))
    body = encode(solid((20, 30, 220)))
    assert predict_request(classifier_id, body, "image/png", {})["predictions"][0]["label"] == "blue"

    artifacts = upload_version(aws_resources, classifier_id, 2, classifier_onnx, classifier_labels(classes=["sky", "leaf", "rose"]))
    aws_resources.table.put_item(Item={
        "pk": keys.model_pk(classifier_id), "sk": keys.version_sk(2), "model_id": classifier_id, "version": 2,
        "status": "ready", "artifacts": artifacts, "promoted": True,
    })
    model_registry.update_model(classifier_id, serving_version=2)

    now[0] += get_settings().serving_cache_seconds - 0.5
    assert predict_request(classifier_id, body, "image/png", {})["version"] == 1  # remembered: no table reads
    now[0] += 1.0
    answer = predict_request(classifier_id, body, "image/png", {})
    assert answer["version"] == 2
    assert answer["predictions"][0]["label"] == "sky"
