"""One labelled image added through the API (``POST /v1/datasets/{name}/images``): a prediction a user corrected,
for example (the feedback loop).

It takes the way of every upload, not a side door: the image and a one-line SageMaker Ground Truth manifest that
labels it are written under ``datasets/<name>/api/`` of the data bucket, and the bucket's notifications register
them. Both keys are named by the image's SHA-256, so posting the same image again replaces its annotation.
"""
from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from sightline import aws
from sightline.config import get_settings
from sightline.contract import CLASSIFICATION, DETECTION, MULTILABEL
from sightline.datasets.formats import groundtruth
from sightline.datasets.formats.base import MIN_BOX_SIDE, Box, clean_label, finite_number, label_problem
from sightline.datasets.images import ImageInfo, InvalidImage, inspect_image
from sightline.datasets import store
from sightline.datasets.paths import DATASETS_PREFIX
from sightline.errors import BadRequest, PayloadTooLarge

API_FOLDER = "api"  # datasets/<name>/api/<sha256>.<ext> and .manifest
MAX_BOXES = 1000
MAX_LABELS = 1000
REQUEST_FIELDS = ("image", "label", "labels", "boxes")
ANNOTATION_FIELDS = ("label", "labels", "boxes")
BOX_FIELDS = ("label", "x_min", "y_min", "x_max", "y_max")
# The manifest line's attribute names and job name, as a Ground Truth labelling job would write them.
CLASS_ATTRIBUTE = "class"
BOXES_ATTRIBUTE = "bounding-box"
JOB_NAME = "sightline-api"
MANIFEST_CONTENT_TYPE = "application/x-ndjson"


@dataclass(frozen=True)
class LabelledImage:
    data: bytes
    info: ImageInfo
    labels: tuple[str, ...] | None = None  # its classes, sorted (none: an image of none of them)
    boxes: tuple[Box, ...] | None = None  # detection (an empty tuple: an image with no objects)

    @property
    def task(self) -> str:
        if self.boxes is not None:
            return DETECTION
        return CLASSIFICATION if self.labels is not None and len(self.labels) == 1 else MULTILABEL


# ---------------------------------------------------------------- the request


def _image(encoded: Any) -> tuple[bytes, ImageInfo]:
    if not isinstance(encoded, str) or not encoded.strip():
        raise BadRequest('"image" is required: the image file as a base64 string', code="missing_image")
    if encoded.startswith("data:") and "," in encoded:
        encoded = encoded.partition(",")[2]  # a data URL, as a browser's FileReader gives it
    try:
        data = base64.b64decode("".join(encoded.split()), validate=True)
    except (binascii.Error, ValueError) as error:
        raise BadRequest(f'"image" is not valid base64: {error}', code="invalid_base64") from None
    settings = get_settings()
    if len(data) > settings.max_image_bytes:
        raise PayloadTooLarge(f"image is {len(data)} bytes; the limit is {settings.max_image_bytes} bytes (upload "
                              "bigger images with POST /v1/datasets/{name}/uploads)", code="image_too_large")
    try:
        return data, inspect_image(data, max_pixels=settings.max_image_pixels)
    except InvalidImage as error:
        raise BadRequest(str(error), code="invalid_image") from None


def _label(value: Any, where: str) -> str:
    label = clean_label(value)
    if label is None:
        raise BadRequest(f"{where}: {label_problem(value)}", code="invalid_label")
    return label


def _labels(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > MAX_LABELS:
        raise BadRequest(f'"labels" must be a list of at most {MAX_LABELS} class names (an empty list: none of the '
                         "classes)", code="invalid_label")
    return tuple(sorted({_label(label, f"labels[{index}]") for index, label in enumerate(value)}))


def _box(value: Any, index: int, width: int, height: int) -> Box:
    where = f"boxes[{index}]"
    if not isinstance(value, dict):
        raise BadRequest(f'{where} must be an object like {{"label": "car", "x_min": 1, "y_min": 2, "x_max": 30, '
                         '"y_max": 40}', code="invalid_box")
    unknown = sorted(set(value) - set(BOX_FIELDS))
    if unknown:
        raise BadRequest(f"{where}: unknown fields {', '.join(unknown)} (allowed: {', '.join(BOX_FIELDS)})",
                         code="invalid_box")
    label = _label(value.get("label"), f"{where}.label")
    numbers = [finite_number(value.get(name)) for name in BOX_FIELDS[1:]]
    if any(number is None for number in numbers):
        raise BadRequest(f"{where} needs x_min, y_min, x_max, y_max as numbers (pixels)", code="invalid_box")
    box = Box(label, *numbers)  # type: ignore[arg-type]
    if not (0 <= box.x_min and 0 <= box.y_min and box.x_max <= width and box.y_max <= height):
        raise BadRequest(f"{where} {box.describe()} is not inside the {width}x{height} image (pixels of the upright "
                         "image, EXIF orientation applied)", code="invalid_box")
    if box.x_max - box.x_min < MIN_BOX_SIDE or box.y_max - box.y_min < MIN_BOX_SIDE:
        raise BadRequest(f"{where} {box.describe()} must be at least {MIN_BOX_SIDE:g} pixel wide and high, with "
                         "x_min < x_max and y_min < y_max", code="invalid_box")
    return box


def _boxes(value: Any, info: ImageInfo) -> tuple[Box, ...]:
    if not isinstance(value, list) or len(value) > MAX_BOXES:
        raise BadRequest(f'"boxes" must be a list of at most {MAX_BOXES} boxes (an empty list: nothing to detect)',
                         code="invalid_box")
    return tuple(_box(box, index, info.width, info.height) for index, box in enumerate(value))


def parse_request(request: dict[str, Any]) -> LabelledImage:
    """The image and its annotation, checked: a 400 (or 413) saying what is wrong."""
    unknown = sorted(set(request) - set(REQUEST_FIELDS))
    if unknown:
        raise BadRequest(f"unknown fields: {', '.join(unknown)} (allowed: {', '.join(REQUEST_FIELDS)})",
                         code="unknown_field")
    given = [name for name in ANNOTATION_FIELDS if name in request]
    if len(given) != 1:
        raise BadRequest('give exactly one of "label", "labels" or "boxes" with the image'
                         + (f" (got {', '.join(given)})" if given else ""), code="invalid_annotation")
    data, info = _image(request.get("image"))
    if "boxes" in request:
        return LabelledImage(data, info, boxes=_boxes(request["boxes"], info))
    labels = (_label(request["label"], "label"),) if "label" in request else _labels(request["labels"])
    return LabelledImage(data, info, labels=labels)


# ---------------------------------------------------------------- the manifest line


def manifest_line(source_ref: str, image: LabelledImage) -> str:
    """The image's annotation as one line of a Ground Truth output manifest (what ``formats.groundtruth`` reads)."""
    entry: dict[str, Any] = {"source-ref": source_ref}
    labels = image.labels or ()
    if image.boxes is not None:
        class_ids = {label: number for number, label in enumerate(sorted({box.label for box in image.boxes}))}
        entry[BOXES_ATTRIBUTE] = {
            "image_size": [{"width": image.info.width, "height": image.info.height}],
            "annotations": [
                {"class_id": class_ids[box.label], "left": box.x_min, "top": box.y_min,
                 "width": box.x_max - box.x_min, "height": box.y_max - box.y_min}
                for box in image.boxes
            ],
        }
        entry[f"{BOXES_ATTRIBUTE}-metadata"] = {
            "class-map": {str(number): label for label, number in class_ids.items()},
            "type": groundtruth.DETECTION_TYPE, "human-annotated": "yes", "job-name": JOB_NAME,
        }
    elif len(labels) == 1:
        entry[CLASS_ATTRIBUTE] = 0
        entry[f"{CLASS_ATTRIBUTE}-metadata"] = {
            "class-name": labels[0], "type": groundtruth.CLASSIFICATION_TYPE, "confidence": 1.0,
            "human-annotated": "yes", "job-name": JOB_NAME,
        }
    else:  # several classes, or none (an image of none of them): a multi-label job's answer
        entry[CLASS_ATTRIBUTE] = list(range(len(labels)))
        entry[f"{CLASS_ATTRIBUTE}-metadata"] = {
            "class-map": {str(number): label for number, label in enumerate(labels)},
            "type": groundtruth.MULTILABEL_TYPE, "human-annotated": "yes", "job-name": JOB_NAME,
        }
    return json.dumps(entry, separators=(",", ":")) + "\n"


# ---------------------------------------------------------------- writing it


def add_image(dataset: str, request: dict[str, Any]) -> dict[str, Any]:
    """``POST /v1/datasets/{name}/images``: write the image and its manifest line; registration follows."""
    store.check_accepts_uploads(dataset)
    image = parse_request(request)
    bucket = get_settings().data_bucket
    stem = f"{DATASETS_PREFIX}{dataset}/{API_FOLDER}/{image.info.sha256}"
    image_key, manifest_key = f"{stem}.{image.info.extension}", f"{stem}.manifest"
    s3 = aws.client("s3")
    try:
        # Named by its content: one already there is this image, and writing it again would only notify again.
        s3.put_object(Bucket=bucket, Key=image_key, Body=image.data, ContentType=image.info.content_type,
                      IfNoneMatch="*")
    except ClientError as error:
        if not aws.is_condition_failed(error):
            raise
    # After the image, so the manifest never names an image that is not there; a new annotation replaces the old.
    line = manifest_line(f"s3://{bucket}/{image_key}", image)
    s3.put_object(Bucket=bucket, Key=manifest_key, Body=line.encode(), ContentType=MANIFEST_CONTENT_TYPE)
    return {
        "dataset": dataset,
        "task": image.task,
        "bucket": bucket,
        "image": {"key": image_key, "sha256": image.info.sha256, "width": image.info.width,
                  "height": image.info.height},
        "manifest": {"key": manifest_key},
    }
