"""Uploads with the API key alone: presigned (multipart) upload URLs into a dataset's folder
(POST /v1/datasets/{name}/uploads, .../uploads/complete, .../uploads/abort), and one labelled image added through
the API (POST /v1/datasets/{name}/images), both registered the way every upload is."""
from __future__ import annotations

import base64
import io
import json
import random
from urllib.parse import urlsplit

import pytest
import requests
from botocore.exceptions import ClientError
from PIL import Image

from sightline.datasets import labelled_images, registration, uploads
from sightline.datasets.formats import parse_annotation_file
from sightline.datasets.issues import IssueLog
from api_helpers import request
from support import TEST_ENV, intercept_aws, make_zip, png

POST = "apigw_post_models.json"  # any POST event: the path and body are replaced
MIB = 1024 * 1024


def post(path: str, body=None, raw_body: str | None = None):
    return request(POST, path=path, body=body, raw_body=raw_body)


def ask(files: list[dict], dataset: str = "pets"):
    return post(f"/v1/datasets/{dataset}/uploads", {"files": files})


def error(answer) -> tuple[int, str, str]:
    return answer.status, answer.json["error"]["code"], answer.json["error"]["message"]


def put(upload: dict, data: bytes) -> requests.Response:
    """The client's side: a plain HTTP PUT with the headers the answer named (moto intercepts the URL)."""
    return requests.put(upload["url"], data=data, headers=upload["headers"], timeout=10)


def s3_objects(api_env, prefix: str = "datasets/") -> dict[str, bytes]:
    s3, bucket = api_env.resources.s3, api_env.resources.data_bucket
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {item["Key"]: s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read() for item in listing}


def register_all(api_env, prefix: str) -> dict:
    """What the bucket's notifications do: register every object under ``prefix``, then recompute the dataset."""
    dataset = prefix.split("/")[1]
    for key in s3_objects(api_env, prefix):
        outcome = registration.register_object(api_env.resources.data_bucket, key, recompute=False)
        assert outcome["status"] in ("registered", "unchanged"), outcome
    return registration.recompute_dataset(dataset)


def noise_png(size: int, seed: int) -> bytes:
    """An incompressible PNG of about ``size``x``size``x3 bytes."""
    image = Image.frombytes("RGB", (size, size), random.Random(seed).randbytes(size * size * 3))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=0)
    return buffer.getvalue()


# ---------------------------------------------------------------- presigned single uploads


def test_a_small_file_gets_one_presigned_put_into_the_dataset_folder(api_env):
    answer = ask([{"path": "cats/1.png", "size": 1234, "content_type": "image/png"}], dataset="new-pets")
    assert answer.status == 200, answer.json
    document = answer.json
    assert document["dataset"] == "new-pets" and document["bucket"] == TEST_ENV["DATA_BUCKET"]
    assert document["expires_in"] == uploads.URL_EXPIRY_SECONDS == 3600
    assert document["expires_at"].endswith("Z")
    [upload] = document["uploads"]
    assert upload["path"] == "cats/1.png" and upload["key"] == "datasets/new-pets/cats/1.png"
    assert (upload["type"], upload["method"], upload["size"]) == ("single", "PUT", 1234)
    assert upload["headers"] == {"Content-Type": "image/png", "Content-Length": "1234"}
    url = urlsplit(upload["url"])
    assert url.path.endswith("/datasets/new-pets/cats/1.png")
    query = dict(part.split("=", 1) for part in url.query.split("&"))
    # SigV4, bound to the length and type the client declared, expiring in an hour
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256" and query["X-Amz-Expires"] == "3600"
    assert query["X-Amz-SignedHeaders"] == "content-length%3Bcontent-type%3Bhost"


def test_the_content_type_defaults_from_the_file_name(api_env):
    paths = ["a.jpg", "b.webp", "c.zip", "d.tar.gz", "e.manifest"]
    answer = ask([{"path": path, "size": 10} for path in paths]).json["uploads"]
    assert [upload["headers"]["Content-Type"] for upload in answer] == [
        "image/jpeg", "image/webp", "application/zip", "application/gzip", "application/octet-stream"]


def test_a_presigned_put_uploads_with_plain_http_and_registers(api_env):
    data = png(seed=5)
    [upload] = ask([{"path": "cats/5.png", "size": len(data), "content_type": "image/png"}]).json["uploads"]
    response = put(upload, data)
    assert response.status_code == 200, response.text
    stored = api_env.resources.s3.get_object(Bucket=api_env.resources.data_bucket, Key=upload["key"])
    assert stored["Body"].read() == data and stored["ContentType"] == "image/png"
    asked = {"files": [{"path": "cats/5.png", "etag": response.headers["ETag"]}]}
    pending = post("/v1/datasets/pets/uploads/status", asked)
    assert pending.status == 200 and pending.json == {"files": [{"path": "cats/5.png", "state": "pending"}],
                                                      "summarized": False}
    dataset = register_all(api_env, "datasets/pets/")
    assert (dataset["status"], dataset["classes"]) == ("ready", {"cats": 1})
    done = post("/v1/datasets/pets/uploads/status", asked).json
    assert done["summarized"] and done["files"][0]["state"] == "registered"


# ---------------------------------------------------------------- multipart uploads


@pytest.fixture
def small_parts(monkeypatch):
    """Multipart from 1 KiB and parts of 1 MiB, so a test moves megabytes, not hundreds of them."""
    from moto.s3 import models as moto_s3

    monkeypatch.setattr(uploads, "SINGLE_PUT_MAX_BYTES", 1024)
    monkeypatch.setattr(uploads, "MIN_PART_BYTES", MIB)
    monkeypatch.setattr(moto_s3, "S3_UPLOAD_PART_MIN_SIZE", MIB)


def test_a_big_archive_gets_a_multipart_upload_with_a_url_per_part(api_env):
    size = 150 * MIB + 1
    answer = ask([{"path": "big.zip", "size": size}])
    assert answer.status == 200, answer.json
    [upload] = answer.json["uploads"]
    assert upload["type"] == "multipart" and upload["upload_id"]
    assert upload["part_size"] == uploads.MIN_PART_BYTES == 64 * MIB
    assert [part["part_number"] for part in upload["parts"]] == [1, 2, 3]
    assert [part["size"] for part in upload["parts"]] == [64 * MIB, 64 * MIB, 22 * MIB + 1]
    assert all(part["method"] == "PUT" and "partNumber=" in part["url"] for part in upload["parts"])
    assert upload["parts"][2]["headers"] == {"Content-Length": str(22 * MIB + 1)}
    assert answer.json["complete"] == "/v1/datasets/pets/uploads/complete"
    pending = api_env.resources.s3.list_multipart_uploads(Bucket=api_env.resources.data_bucket)["Uploads"]
    assert [(u["Key"], u["UploadId"]) for u in pending] == [("datasets/pets/big.zip", upload["upload_id"])]


def test_parts_grow_so_that_a_file_never_needs_more_urls_than_an_answer_holds():
    assert uploads.part_size(100 * MIB) == 64 * MIB
    huge = 5 * 1024 ** 4  # S3's largest object
    assert uploads.part_size(huge) % MIB == 0
    assert -(-huge // uploads.part_size(huge)) <= uploads.MAX_URLS_PER_ANSWER <= uploads.S3_MAX_PARTS


def test_a_multipart_upload_completes_through_the_api_and_registers(api_env, small_parts):
    archive = make_zip({f"dogs/{n}.png": noise_png(540, n) for n in range(3)}, compression=0)
    assert 2 * MIB < len(archive) < 3 * MIB
    [upload] = ask([{"path": "dogs.zip", "size": len(archive)}]).json["uploads"]
    assert upload["type"] == "multipart" and len(upload["parts"]) == 3
    parts = []
    for part in upload["parts"]:
        start = (part["part_number"] - 1) * upload["part_size"]
        response = put(part, archive[start:start + part["size"]])
        assert response.status_code == 200, response.text
        parts.append({"part_number": part["part_number"], "etag": response.headers["ETag"]})
    done = post("/v1/datasets/pets/uploads/complete",
                {"path": "dogs.zip", "upload_id": upload["upload_id"], "parts": parts[::-1]})  # any order
    assert done.status == 200, done.json
    assert done.json["key"] == "datasets/pets/dogs.zip" and done.json["etag"]
    assert s3_objects(api_env)["datasets/pets/dogs.zip"] == archive
    dataset = register_all(api_env, "datasets/pets/")
    assert (dataset["status"], dataset["classes"]) == ("ready", {"dogs": 3})


def test_expired_part_urls_are_signed_again_for_the_same_upload(api_env, small_parts):
    size = 2 * MIB + 10
    [first] = ask([{"path": "again.zip", "size": size}]).json["uploads"]
    etag = put(first["parts"][0], b"x" * MIB).headers["ETag"]
    [again] = ask([{"path": "again.zip", "size": size, "upload_id": first["upload_id"]}]).json["uploads"]
    assert again["upload_id"] == first["upload_id"]
    assert again["parts"][0] == {"part_number": 1, "size": MIB, "etag": etag}  # uploaded: no URL
    assert [("url" in part) for part in again["parts"]] == [False, True, True]


def test_an_upload_can_be_aborted_and_is_then_gone(api_env, small_parts):
    [upload] = ask([{"path": "gone.tar", "size": 4096}]).json["uploads"]
    body = {"path": "gone.tar", "upload_id": upload["upload_id"]}
    aborted = post("/v1/datasets/pets/uploads/abort", body)
    assert aborted.status == 200 and aborted.json["aborted"] is True
    assert api_env.resources.s3.list_multipart_uploads(Bucket=api_env.resources.data_bucket).get("Uploads", []) == []
    again = post("/v1/datasets/pets/uploads/abort", body)
    assert error(again)[:2] == (404, "upload_not_found")
    resume = ask([{"path": "gone.tar", "size": 4096, "upload_id": upload["upload_id"]}])
    assert error(resume)[:2] == (404, "upload_not_found")


def test_completing_an_upload_s3_no_longer_has_is_404(api_env, monkeypatch):
    # moto 5.2.5 fails with a KeyError here; S3 answers NoSuchUpload.
    def no_such_upload(real, **kwargs):
        raise ClientError({"Error": {"Code": "NoSuchUpload", "Message": "The specified upload does not exist."}},
                          "CompleteMultipartUpload")

    intercept_aws(monkeypatch, "s3", "complete_multipart_upload", no_such_upload)
    answer = post("/v1/datasets/pets/uploads/complete",
                  {"path": "a.zip", "upload_id": "u", "parts": [{"part_number": 1, "etag": '"x"'}]})
    status, code, message = error(answer)
    assert (status, code) == (404, "upload_not_found") and "'a.zip'" in message


def test_parts_s3_does_not_have_are_refused_with_its_reason(api_env, small_parts):
    [upload] = ask([{"path": "bad.zip", "size": 4096}]).json["uploads"]
    put(upload["parts"][0], b"y" * 4096)
    answer = post("/v1/datasets/pets/uploads/complete",
                  {"path": "bad.zip", "upload_id": upload["upload_id"], "parts": [{"part_number": 1, "etag": '"nope"'}]})
    status, code, message = error(answer)
    assert (status, code) == (400, "invalid_parts") and "bad.zip" in message


# ---------------------------------------------------------------- refused upload requests

IMAGE_LIMIT = 64 * MIB


@pytest.mark.parametrize(
    ("body", "code", "says"),
    [
        ({}, "invalid_files", "files must be a non-empty list"),
        ({"files": []}, "invalid_files", "non-empty"),
        ({"files": "a.jpg"}, "invalid_files", "non-empty list"),
        ({"files": [{"path": "a.jpg", "size": 1}], "extra": 1}, "unknown_field", "extra"),
        ({"files": ["a.jpg"]}, "invalid_file", "files[0] must be an object"),
        ({"files": [{"path": "a.jpg", "size": 1, "acl": "public-read"}]}, "unknown_field", "acl"),
        ({"files": [{"size": 1}]}, "invalid_path", "relative to the dataset"),
        ({"files": [{"path": "/etc/passwd.jpg", "size": 1}]}, "invalid_path", "is absolute"),
        ({"files": [{"path": "../other/1.jpg", "size": 1}]}, "invalid_path", "'..' segments"),
        ({"files": [{"path": "cats/../../x/1.jpg", "size": 1}]}, "invalid_path", "'..' segments"),
        ({"files": [{"path": "cats/./1.jpg", "size": 1}]}, "invalid_path", "'..' segments"),
        ({"files": [{"path": "cats\\1.jpg", "size": 1}]}, "invalid_path", "separate folders with '/'"),
        ({"files": [{"path": "cats/\x001.jpg", "size": 1}]}, "invalid_path", "non-printable"),
        ({"files": [{"path": "cats/\u200b1.jpg", "size": 1}]}, "invalid_path", "non-printable"),
        ({"files": [{"path": "cats//1.jpg", "size": 1}]}, "invalid_path", "empty or blank"),
        ({"files": [{"path": "cats/", "size": 1}]}, "invalid_path", "empty or blank"),
        ({"files": [{"path": "x" * 1000 + ".jpg", "size": 1}]}, "invalid_path", "longer than 1000 bytes"),
        ({"files": [{"path": "cats/.DS_Store", "size": 1}]}, "invalid_path", "registration ignores"),
        ({"files": [{"path": "setup.exe", "size": 1}]}, "unsupported_file_type", "unsupported file type .exe"),
        ({"files": [{"path": "a.jpg", "size": 0}]}, "invalid_size", "positive integer"),
        ({"files": [{"path": "a.jpg", "size": -5}]}, "invalid_size", "positive integer"),
        ({"files": [{"path": "a.jpg", "size": "12"}]}, "invalid_size", "positive integer"),
        ({"files": [{"path": "a.jpg", "size": True}]}, "invalid_size", "positive integer"),
        ({"files": [{"path": "a.jpg", "size": 1.5}]}, "invalid_size", "positive integer"),
        ({"files": [{"path": "a.jpg", "size": IMAGE_LIMIT + 1}]}, "file_too_large", f"at most {IMAGE_LIMIT} bytes"),
        ({"files": [{"path": "a.csv", "size": IMAGE_LIMIT + 1}]}, "file_too_large", f"at most {IMAGE_LIMIT} bytes"),
        ({"files": [{"path": "a.zip", "size": 2 * 1024 ** 3 + 1}]}, "file_too_large", f"at most {2 * 1024 ** 3} bytes"),
        ({"files": [{"path": "a.jpg", "size": 1, "content_type": "jpeg"}]}, "invalid_content_type", "media type"),
        ({"files": [{"path": "a.jpg", "size": 1, "content_type": "image/jpeg\r\nx-amz-acl: public-read"}]},
         "invalid_content_type", "media type"),
        ({"files": [{"path": "a.jpg", "size": 1}, {"path": "a.jpg", "size": 2}]}, "duplicate_path", "listed twice"),
        ({"files": [{"path": "a.jpg", "size": 1, "upload_id": "abc"}]}, "invalid_upload_id", "not uploaded in parts"),
        ({"files": [{"path": "a.zip", "size": 200 * MIB, "upload_id": "a b"}]}, "invalid_upload_id", "upload_id"),
        ({"files": [{"path": f"{n}.jpg", "size": 1} for n in range(1001)]}, "too_many_files", "at most 1000"),
        ({"files": [{"path": f"{n}.zip", "size": 2 * 1024 ** 3} for n in range(63)]}, "too_many_files",
         "2016 upload URLs; one answer holds at most 2000"),
    ],
)
def test_unusable_upload_requests_are_refused_with_the_reason(api_env, body, code, says):
    status, got, message = error(post("/v1/datasets/pets/uploads", body))
    assert (status, got) == (400, code), message
    assert says in message
    assert api_env.resources.s3.list_multipart_uploads(Bucket=api_env.resources.data_bucket).get("Uploads", []) == []


@pytest.mark.parametrize("route", ["uploads", "uploads/complete", "uploads/abort", "uploads/status", "images"])
@pytest.mark.parametrize("name", ["bad!name", "..", "x" * 65])
def test_every_route_refuses_an_invalid_dataset_name(api_env, route, name):
    bodies = {"uploads": {"files": [{"path": "a.jpg", "size": 1}]},
              "uploads/complete": {"path": "a.zip", "upload_id": "u", "parts": [{"part_number": 1, "etag": "e"}]},
              "uploads/abort": {"path": "a.zip", "upload_id": "u"},
              "uploads/status": {"files": [{"path": "a.jpg"}]},
              "images": {"image": base64.b64encode(png()).decode(), "label": "cat"}}
    status, code, message = error(post(f"/v1/datasets/{name}/{route}", bodies[route]))
    assert (status, code) == (400, "invalid_dataset_name") and "invalid dataset name" in message


def test_a_body_that_is_not_json_is_refused(api_env):
    assert error(post("/v1/datasets/pets/uploads", raw_body="files=a.jpg"))[:2] == (400, "invalid_json")


@pytest.mark.parametrize(
    ("body", "code", "says"),
    [
        ({"path": "a.zip", "parts": [{"part_number": 1, "etag": "e"}]}, "invalid_upload_id", "upload_id"),
        ({"path": "../a.zip", "upload_id": "u", "parts": [{"part_number": 1, "etag": "e"}]}, "invalid_path", ".."),
        ({"path": "a.zip", "upload_id": "u"}, "invalid_parts", "list of 1 to 10000"),
        ({"path": "a.zip", "upload_id": "u", "parts": []}, "invalid_parts", "list of 1 to 10000"),
        ({"path": "a.zip", "upload_id": "u", "parts": [1]}, "invalid_parts", "parts[0] must be an object"),
        ({"path": "a.zip", "upload_id": "u", "parts": [{"part_number": 0, "etag": "e"}]}, "invalid_parts", "1 to 10000"),
        ({"path": "a.zip", "upload_id": "u", "parts": [{"part_number": True, "etag": "e"}]}, "invalid_parts",
         "integer"),
        ({"path": "a.zip", "upload_id": "u", "parts": [{"part_number": 1}]}, "invalid_parts", "ETag header"),
        ({"path": "a.zip", "upload_id": "u", "parts": [{"part_number": 1, "etag": "e", "size": 1}]}, "unknown_field",
         "size"),
        ({"path": "a.zip", "upload_id": "u", "parts": [{"part_number": 1, "etag": "e"}] * 2}, "invalid_parts",
         "listed twice"),
        ({"path": "a.zip", "upload_id": "u", "parts": [{"part_number": 1, "etag": "e"}], "abort": True},
         "unknown_field", "abort"),
    ],
)
def test_unusable_completions_are_refused_with_the_reason(api_env, body, code, says):
    status, got, message = error(post("/v1/datasets/pets/uploads/complete", body))
    assert (status, got) == (400, code), message
    assert says in message


# ---------------------------------------------------------------- one labelled image through the API


def image_body(data: bytes | None = None, **annotation) -> dict:
    return {"image": base64.b64encode(png(seed=1) if data is None else data).decode(), **annotation}


def parse_manifest(key: str, data: bytes):
    issues = IssueLog(100)
    document = parse_annotation_file(data, path=key, issue_key=key, issues=issues)
    assert issues.count == 0, issues.items
    return document


def test_a_labelled_image_is_written_as_an_image_and_a_ground_truth_manifest(api_env):
    data = png(seed=1)
    answer = post("/v1/datasets/feedback/images", image_body(data, label="cat"))
    assert answer.status == 202, answer.json
    assert answer.headers["location"] == "/v1/datasets/feedback"
    document = answer.json
    image_key, manifest_key = document["image"]["key"], document["manifest"]["key"]
    sha = document["image"]["sha256"]
    assert (image_key, manifest_key) == (f"datasets/feedback/api/{sha}.png", f"datasets/feedback/api/{sha}.manifest")
    assert (document["dataset"], document["task"]) == ("feedback", "classification")
    objects = s3_objects(api_env)
    assert set(objects) == {image_key, manifest_key} and objects[image_key] == data
    [line] = objects[manifest_key].decode().splitlines()
    assert json.loads(line)["source-ref"] == f"s3://{TEST_ENV['DATA_BUCKET']}/{image_key}"
    [entry] = parse_manifest(manifest_key, objects[manifest_key]).images
    assert (entry.file_name, entry.label) == (f"{sha}.png", "cat")
    dataset = register_all(api_env, "datasets/feedback/")
    assert (dataset["status"], dataset["classes"], dataset["images"]) == ("ready", {"cat": 1}, 1)
    assert "classification" in dataset["tasks"] and "groundtruth" in dataset["formats"]


def test_posting_the_image_again_with_a_corrected_label_replaces_the_annotation(api_env):
    first = post("/v1/datasets/feedback/images", image_body(label="dgo")).json
    register_all(api_env, "datasets/feedback/")
    second = post("/v1/datasets/feedback/images", image_body(labels=["dog"])).json
    assert second["manifest"]["key"] == first["manifest"]["key"] and second["image"] == first["image"]
    assert len(s3_objects(api_env)) == 2
    dataset = register_all(api_env, "datasets/feedback/")
    assert dataset["classes"] == {"dog": 1} and dataset["issue_count"] == 0


def test_a_correction_wins_over_the_class_folder_the_image_came_in(api_env):
    data = png(seed=9)
    api_env.datasets.register("datasets/feedback/dog/9.png", data)
    post("/v1/datasets/feedback/images", image_body(data, label="cat"))
    dataset = register_all(api_env, "datasets/feedback/")
    assert dataset["classes"] == {"cat": 1}


def test_several_labels_are_written_as_a_multi_label_manifest_that_registers(api_env):
    answer = post("/v1/datasets/scenes/images", image_body(labels=["outdoor", "cat", "cat"]))
    assert answer.status == 202 and answer.json["task"] == "multilabel"
    manifest_key = answer.json["manifest"]["key"]
    line = json.loads(s3_objects(api_env)[manifest_key])
    assert line["class"] == [0, 1]
    assert line["class-metadata"]["type"] == "groundtruth/image-classification-multilabel"
    assert line["class-metadata"]["class-map"] == {"0": "cat", "1": "outdoor"}
    [entry] = parse_manifest(manifest_key, s3_objects(api_env)[manifest_key]).images
    assert entry.class_labels == ["cat", "outdoor"]
    dataset = register_all(api_env, "datasets/scenes/")
    assert dataset["status"] == "ready" and dataset["tasks"] == ["multilabel"]
    assert dataset["classes"] == {"cat": 1, "outdoor": 1}


def test_an_empty_list_of_labels_says_the_image_shows_none_of_the_classes(api_env):
    post("/v1/datasets/scenes/images", image_body(png(seed=3), labels=["cat"]))
    answer = post("/v1/datasets/scenes/images", image_body(labels=[]))
    assert answer.status == 202 and answer.json["task"] == "multilabel"
    [entry] = parse_manifest("m.manifest", s3_objects(api_env)[answer.json["manifest"]["key"]]).images
    assert entry.class_labels == []
    dataset = register_all(api_env, "datasets/scenes/")
    assert dataset["negatives"] == 1 and dataset["classes"] == {"cat": 1}


def test_boxes_are_written_as_a_detection_manifest_that_registers(api_env):
    boxes = [{"label": "circle", "x_min": 2, "y_min": 3.5, "x_max": 20, "y_max": 30},
             {"label": "square", "x_min": 0, "y_min": 0, "x_max": 32, "y_max": 32}]
    answer = post("/v1/datasets/shapes/images", image_body(boxes=boxes))
    assert answer.status == 202 and answer.json["task"] == "detection"
    manifest_key = answer.json["manifest"]["key"]
    [entry] = parse_manifest(manifest_key, s3_objects(api_env)[manifest_key]).images
    assert [box.to_dict() for box in entry.boxes] == [{**box, "y_min": float(box["y_min"])} for box in boxes]
    dataset = register_all(api_env, "datasets/shapes/")
    assert dataset["status"] == "ready" and dataset["tasks"] == ["detection"]
    assert dataset["annotations"] == 2 and dataset["classes"] == {"circle": 1, "square": 1}


def test_an_image_with_no_boxes_is_a_detection_image_with_nothing_in_it(api_env):
    answer = post("/v1/datasets/shapes/images", image_body(boxes=[]))
    assert answer.status == 202 and answer.json["task"] == "detection"
    [entry] = parse_manifest("m.manifest", s3_objects(api_env)[answer.json["manifest"]["key"]]).images
    assert entry.boxes == [] and entry.label is None


def test_boxes_are_checked_against_the_upright_image(api_env):
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: 40x20 stored, 20x40 shown
    Image.new("RGB", (40, 20), "red").save(buffer, "JPEG", exif=exif.tobytes())
    data = buffer.getvalue()
    inside = {"label": "car", "x_min": 0, "y_min": 0, "x_max": 20, "y_max": 40}
    assert post("/v1/datasets/cars/images", image_body(data, boxes=[inside])).status == 202
    outside = {**inside, "x_max": 30, "y_max": 10}
    status, code, message = error(post("/v1/datasets/cars/images", image_body(data, boxes=[outside])))
    assert (status, code) == (400, "invalid_box") and "20x40 image" in message


@pytest.mark.parametrize(
    ("body", "code", "says"),
    [
        ({"label": "cat"}, "missing_image", '"image" is required'),
        ({"image": "", "label": "cat"}, "missing_image", '"image" is required'),
        ({"image": "not base64!", "label": "cat"}, "invalid_base64", "not valid base64"),
        ({"image": base64.b64encode(b"GIF89a not really").decode(), "label": "cat"}, "invalid_image",
         "not a readable image"),
        ({"image": "IMAGE", "label": "cat", "path": "x.png"}, "unknown_field", "path"),
        ({"image": "IMAGE"}, "invalid_annotation", 'exactly one of "label", "labels" or "boxes"'),
        ({"image": "IMAGE", "label": "cat", "boxes": []}, "invalid_annotation", "got label, boxes"),
        ({"image": "IMAGE", "label": ""}, "invalid_label", "not usable"),
        ({"image": "IMAGE", "label": "c" * 129}, "invalid_label", "1 to 128 printable characters"),
        ({"image": "IMAGE", "label": "cat\nfish"}, "invalid_label", "not usable"),
        ({"image": "IMAGE", "label": 5}, "invalid_label", "class name is a int"),
        ({"image": "IMAGE", "labels": "cat"}, "invalid_label", "list of at most 1000"),
        ({"image": "IMAGE", "labels": [f"c{n}" for n in range(1001)]}, "invalid_label", "list of at most 1000"),
        ({"image": "IMAGE", "labels": ["cat", None]}, "invalid_label", "labels[1]"),
        ({"image": "IMAGE", "boxes": {"label": "car"}}, "invalid_box", "list of at most 1000"),
        ({"image": "IMAGE", "boxes": [{"label": "car"}] * 1001}, "invalid_box", "list of at most 1000"),
        ({"image": "IMAGE", "boxes": ["car"]}, "invalid_box", "boxes[0] must be an object"),
        ({"image": "IMAGE", "boxes": [{"label": "car", "x_min": 1, "y_min": 1, "x_max": 9, "y_max": 9, "score": 1}]},
         "invalid_box", "unknown fields score"),
        ({"image": "IMAGE", "boxes": [{"x_min": 1, "y_min": 1, "x_max": 9, "y_max": 9}]}, "invalid_label",
         "boxes[0].label"),
        ({"image": "IMAGE", "boxes": [{"label": "car", "x_min": "1", "y_min": 1, "x_max": 9, "y_max": 9}]},
         "invalid_box", "as numbers"),
        ({"image": "IMAGE", "boxes": [{"label": "car", "x_min": -1, "y_min": 1, "x_max": 9, "y_max": 9}]},
         "invalid_box", "not inside the 32x32 image"),
        ({"image": "IMAGE", "boxes": [{"label": "car", "x_min": 1, "y_min": 1, "x_max": 33, "y_max": 9}]},
         "invalid_box", "not inside the 32x32 image"),
        ({"image": "IMAGE", "boxes": [{"label": "car", "x_min": 9, "y_min": 1, "x_max": 1, "y_max": 9}]},
         "invalid_box", "x_min < x_max"),
        ({"image": "IMAGE", "boxes": [{"label": "car", "x_min": 1, "y_min": 1, "x_max": 1.5, "y_max": 9}]},
         "invalid_box", "at least 1 pixel"),
    ],
)
def test_unusable_images_and_annotations_are_refused_with_the_reason(api_env, body, code, says):
    if body.get("image") == "IMAGE":
        body = {**body, "image": base64.b64encode(png(seed=1)).decode()}
    status, got, message = error(post("/v1/datasets/feedback/images", body))
    assert (status, got) == (400, code), message
    assert says in message
    assert s3_objects(api_env) == {}


def test_an_image_over_the_api_limit_is_413(api_env, monkeypatch):
    from sightline.config import get_settings

    monkeypatch.setenv("MAX_IMAGE_BYTES", "100")
    get_settings.cache_clear()
    status, code, message = error(post("/v1/datasets/feedback/images", image_body(label="cat")))
    assert (status, code) == (413, "image_too_large") and "the limit is 100 bytes" in message
    assert "/uploads" in message


def test_a_data_url_is_accepted_as_browsers_give_it(api_env):
    body = image_body(label="cat")
    body["image"] = "data:image/png;base64," + body["image"]
    assert post("/v1/datasets/feedback/images", body).status == 202


def test_the_manifest_line_is_what_a_ground_truth_job_writes():
    info = labelled_images.inspect_image(png(seed=2), max_pixels=10_000)
    image = labelled_images.LabelledImage(b"", info, labels=("cat",))
    entry = json.loads(labelled_images.manifest_line("s3://b/datasets/x/api/a.png", image))
    assert entry == {
        "source-ref": "s3://b/datasets/x/api/a.png",
        "class": 0,
        "class-metadata": {"class-name": "cat", "type": "groundtruth/image-classification", "confidence": 1.0,
                           "human-annotated": "yes", "job-name": "sightline-api"},
    }

