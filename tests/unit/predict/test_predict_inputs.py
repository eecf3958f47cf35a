"""Every way users send images to predict (multipart forms, zips, S3 objects) and the options beyond threshold
and max_results (version, classes), answered through ``sightline.predict_request``."""
from __future__ import annotations

import base64
import io
import json
import zipfile

import pytest

from sightline import keys
from sightline.errors import SightlineError
from sightline.predict_request import predict_event, predict_many, predict_request
from sightline.predict_inputs import MAX_IMAGES_PER_ZIP
from predict_helpers import classifier_labels, encode, solid, upload_version
from tests.support import TEST_ENV

RED, BLUE = (220, 30, 60), (20, 30, 220)


@pytest.fixture
def classifier_id(seed_model, classifier_onnx) -> str:
    return seed_model(classifier_onnx, classifier_labels())


def form(fields: dict[str, str], file: bytes | None, filename: str = "photo.png",
         file_type: str = "image/png") -> tuple[bytes, str]:
    """A multipart/form-data body as browsers and curl -F write it."""
    boundary = "----sightline-test-boundary"
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    if file is not None:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="images_file"; filename="{filename}"\r\n'
                     f"Content-Type: {file_type}\r\n\r\n".encode() + file + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def zipped(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def add_version(resources, model_id: str, version: int, **fields) -> None:
    resources.table.put_item(Item={"pk": keys.model_pk(model_id), "sk": keys.version_sk(version), "model_id": model_id,
                                   "version": version, **fields})


def refused(call, *args) -> SightlineError:
    with pytest.raises(SightlineError) as raised:
        call(*args)
    return raised.value


def test_a_form_with_one_image_and_options_is_answered_like_a_raw_body(classifier_id):
    body, content_type = form({"threshold": "0.0", "max_results": "1"}, encode(solid(RED)))

    answer = predict_request(classifier_id, body, content_type, {})

    assert [p["label"] for p in answer["predictions"]] == ["red"]
    assert answer["image"] == {"width": 30, "height": 20}


def test_a_zip_in_a_form_is_answered_per_image_in_the_zips_order(classifier_id):
    archive = zipped({"a/red.png": encode(solid(RED)), "__MACOSX/._red.png": b"junk", "blue.jpg": encode(solid(BLUE), "JPEG"),
                      "notes.txt": b"hello", "broken.png": b"\x89PNG not really", "folder/": b""})
    body, content_type = form({"max_results": "1"}, archive, filename="batch.zip", file_type="application/zip")

    answer = predict_request(classifier_id, body, content_type, {})

    by_name = {entry["name"]: entry for entry in answer["images"]}
    assert list(by_name) == ["a/red.png", "blue.jpg", "notes.txt", "broken.png"]
    assert by_name["a/red.png"]["predictions"][0]["label"] == "red"
    assert by_name["blue.jpg"]["predictions"][0]["label"] == "blue"
    assert by_name["notes.txt"]["error"]["code"] == "invalid_image"
    assert "notes.txt" in by_name["notes.txt"]["error"]["message"]
    assert by_name["broken.png"]["error"]["code"] == "invalid_image"
    assert answer["version"] == 1 and "predictions" not in answer


def test_a_raw_zip_body_is_answered_per_image(classifier_id):
    answer = predict_request(classifier_id, zipped({"red.png": encode(solid(RED))}), "application/zip", {"max_results": "1"})
    assert answer["images"][0]["predictions"][0]["label"] == "red"


def test_zips_past_the_limits_are_refused_with_the_reason(classifier_id, monkeypatch):
    image = encode(solid(RED))
    too_many = zipped({f"{n}.png": image for n in range(MAX_IMAGES_PER_ZIP + 1)})
    assert refused(predict_request, classifier_id, too_many, "application/zip", {}).code == "too_many_images"
    assert refused(predict_request, classifier_id, zipped({"readme.md/": b""}), "application/zip", {}).code == "missing_image"
    assert refused(predict_request, classifier_id, b"PK\x03\x04 not a zip", "application/zip", {}).code == "invalid_zip"

    # A member that expands past the image limit is answered as too large; its neighbours still are predicted.
    monkeypatch.setenv("MAX_IMAGE_BYTES", "100000")
    from sightline.config import get_settings
    get_settings.cache_clear()
    try:
        bomb = zipped({"bomb.png": b"\0" * 5_000_000, "red.png": image})
        answer = predict_request(classifier_id, bomb, "application/zip", {})
    finally:
        monkeypatch.delenv("MAX_IMAGE_BYTES")
        get_settings.cache_clear()
    assert answer["images"][0]["error"]["code"] == "image_too_large"
    assert answer["images"][1]["predictions"]


def test_forms_without_their_file_or_boundary_are_refused(classifier_id):
    body, content_type = form({"threshold": "0.5"}, None)
    assert refused(predict_request, classifier_id, body, content_type, {}).code == "missing_image"
    assert refused(predict_request, classifier_id, body, "multipart/form-data", {}).code == "invalid_form"
    body, content_type = form({"threshold": "lots"}, encode(solid(RED)))
    assert refused(predict_request, classifier_id, body, content_type, {}).code == "invalid_threshold"


def test_an_s3_uri_in_the_deployments_data_bucket_is_predicted(aws_resources, classifier_id):
    aws_resources.s3.put_object(Bucket=TEST_ENV["DATA_BUCKET"], Key="incoming/red.png", Body=encode(solid(RED)))
    body = json.dumps({"s3_uri": f"s3://{TEST_ENV['DATA_BUCKET']}/incoming/red.png", "max_results": 1}).encode()

    answer = predict_request(classifier_id, body, "application/json", {})

    assert answer["predictions"][0]["label"] == "red"


def test_s3_uris_elsewhere_or_missing_are_refused_without_reading_them(aws_resources, classifier_id):
    aws_resources.s3.create_bucket(Bucket="someone-elses-bucket")
    aws_resources.s3.put_object(Bucket="someone-elses-bucket", Key="red.png", Body=encode(solid(RED)))

    def ask(uri):
        return refused(predict_request, classifier_id, json.dumps({"s3_uri": uri}).encode(), "application/json", {})

    elsewhere = ask("s3://someone-elses-bucket/red.png")
    assert (elsewhere.status, elsewhere.code) == (400, "invalid_s3_uri")
    assert TEST_ENV["DATA_BUCKET"] in elsewhere.message
    for uri in ("https://example.com/red.png", "s3://", "s3:///key", f"s3://{TEST_ENV['DATA_BUCKET']}"):
        assert ask(uri).code == "invalid_s3_uri", uri
    missing = ask(f"s3://{TEST_ENV['DATA_BUCKET']}/nothing-here.png")
    assert (missing.status, missing.code) == (404, "image_not_found")
    both = refused(predict_request, classifier_id, json.dumps({"s3_uri": "s3://x/y", "image": "AAAA"}).encode(),
                   "application/json", {})
    assert both.code == "invalid_json"


def test_classes_keeps_only_those_labels_before_max_results(classifier_id):
    body = encode(solid(RED))
    everything = predict_request(classifier_id, body, "image/png", {"threshold": "0"})["predictions"]
    assert everything[0]["label"] == "red"

    only_blue = predict_request(classifier_id, body, "image/png", {"threshold": "0", "classes": "blue", "max_results": "1"})
    assert [p["label"] for p in only_blue["predictions"]] == ["blue"]
    as_json = json.dumps({"image": base64.b64encode(body).decode(), "threshold": 0, "classes": ["green", "blue"]})
    assert {p["label"] for p in predict_request(classifier_id, as_json.encode(), "application/json", {})["predictions"]} == {"green", "blue"}

    unknown = refused(predict_request, classifier_id, body, "image/png", {"classes": "purple"})
    assert (unknown.status, unknown.code) == (400, "invalid_classes")
    assert "purple" in unknown.message
    assert refused(predict_request, classifier_id, json.dumps({"image": "AAAA", "classes": [1]}).encode(),
                   "application/json", {}).code == "invalid_classes"


def test_a_pinned_version_answers_instead_of_the_serving_one(aws_resources, classifier_id, classifier_onnx):
    artifacts = upload_version(aws_resources, classifier_id, 2, classifier_onnx, classifier_labels(classes=["sky", "leaf", "rose"]))
    add_version(aws_resources, classifier_id, 2, status="ready", artifacts=artifacts, promoted=False)  # rejected by the gate
    body = encode(solid(BLUE))

    assert predict_request(classifier_id, body, "image/png", {})["version"] == 1
    pinned = predict_request(classifier_id, body, "image/png", {"version": "2"})
    assert (pinned["version"], pinned["predictions"][0]["label"]) == (2, "sky")

    missing = refused(predict_request, classifier_id, body, "image/png", {"version": "7"})
    assert (missing.status, missing.code) == (404, "version_not_found")
    assert refused(predict_request, classifier_id, body, "image/png", {"version": "two"}).code == "invalid_version"


def test_a_pinned_version_that_is_not_ready_is_a_conflict(aws_resources, classifier_id):
    add_version(aws_resources, classifier_id, 2, status="failed", failure_reason="out of memory")
    error = refused(predict_request, classifier_id, encode(solid(RED)), "image/png", {"version": "2"})
    assert (error.status, error.code) == (409, "version_not_ready")


def test_several_models_answer_each_in_turn_and_an_unknown_one_gets_its_own_error(seed_model, classifier_onnx):
    first = seed_model(classifier_onnx, classifier_labels())
    second = seed_model(classifier_onnx, classifier_labels(classes=["sky", "leaf", "rose"]))
    body = json.dumps({"models": [first, {"model_id": second, "version": 1}, "no-such-model"],
                       "image": base64.b64encode(encode(solid(RED))).decode(), "max_results": 1}).encode()

    answer = predict_many(body, "application/json", {})

    results = answer["results"]
    assert [r["model_id"] for r in results] == [first, second, "no-such-model"]
    assert results[0]["predictions"][0]["label"] == "red"
    assert results[1]["predictions"][0]["label"] == "rose"
    assert results[2]["error"]["code"] == "model_not_found"


def test_the_several_models_route_checks_its_list(classifier_id):
    image = base64.b64encode(encode(solid(RED))).decode()
    for models, code in (([], "invalid_models"), ([""], "invalid_models"), ([classifier_id] * 11, "invalid_models"),
                         ("not-a-list", None), ([{"model_id": classifier_id, "version": 0}], "invalid_version")):
        body = json.dumps({"models": models, "image": image}).encode()
        if code is None:  # a comma-separated string is read as ids (form fields have no lists)
            assert predict_many(body, "application/json", {})["results"][0]["error"]["code"] == "model_not_found"
            continue
        assert refused(predict_many, body, "application/json", {}).code == code, models
    pinned_for_all = json.dumps({"models": [classifier_id], "version": 1, "image": image}).encode()
    assert refused(predict_many, pinned_for_all, "application/json", {}).code == "invalid_version"
    models_on_one_model = json.dumps({"models": [classifier_id], "image": image}).encode()
    assert refused(predict_request, classifier_id, models_on_one_model, "application/json", {}).code == "invalid_models"


def test_the_event_without_a_model_in_its_path_goes_to_the_several_models_route(classifier_id):
    event = {"resource": "/v1/predict", "pathParameters": None, "headers": {"Content-Type": "application/json"},
             "body": json.dumps({"models": [classifier_id], "image": base64.b64encode(encode(solid(RED))).decode()}),
             "isBase64Encoded": False}
    assert predict_event(event)["results"][0]["model_id"] == classifier_id
