"""The predict request: ``POST /v1/models/{id}/predict`` read from its proxy event, checked, and answered.

The image comes as a raw ``image/*`` body (options in the query string) or as JSON ``{"image": "<base64>"}``;
every way it can be wrong is a 400, 413 or 415 with the error shape. The answer's contract is in
docs/architecture.md, "Predict".
"""
from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sightline import model_registry
from sightline.config import get_settings
from sightline.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from sightline.http_events import event_body, event_header, json_document
from sightline.imaging import decode_image
from sightline.inference import DEFAULT_MAX_RESULTS, load_predictor

MAX_RESULTS_LIMIT = 100
JSON_MEDIA_TYPE = "application/json"


@dataclass(frozen=True)
class PredictRequest:
    image: bytes
    threshold: float | None  # None: the task's default
    max_results: int | None


def parse_predict_request(body: bytes, content_type: str | None, query: Mapping[str, str] | None) -> PredictRequest:
    """The image and options of a predict call, checked: 400, 413 or 415 when they are not usable."""
    query = query or {}
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    max_bytes = get_settings().max_image_bytes
    if media_type.startswith("image/"):
        if len(body) > max_bytes:
            raise PayloadTooLarge(f"image is {len(body)} bytes; the limit is {max_bytes} bytes", code="image_too_large")
        if not body:
            raise BadRequest("request body is empty: send the image file as the body", code="invalid_image")
        return PredictRequest(
            image=body,
            threshold=_threshold(query.get("threshold"), from_query=True),
            max_results=_max_results(query.get("max_results"), from_query=True),
        )
    if media_type == JSON_MEDIA_TYPE:
        return _parse_json_request(body, query, max_bytes)
    raise UnsupportedMediaType(
        f"Content-Type {content_type or '(none)'!s} is not supported: send image/jpeg, image/png "
        'or application/json {"image": "<base64>"}',
    )


def _parse_json_request(body: bytes, query: Mapping[str, str], max_bytes: int) -> PredictRequest:
    # Base64 costs a third more than the image, plus room for the other fields.
    if len(body) > max_bytes * 4 // 3 + 64 * 1024:
        raise PayloadTooLarge(f"body is {len(body)} bytes; the image limit is {max_bytes} bytes", code="image_too_large")
    document = json_document(body, what="body")
    if not isinstance(document, dict):
        raise BadRequest('JSON body must be an object like {"image": "<base64>"}', code="invalid_json")
    encoded = document.get("image")
    if not isinstance(encoded, str) or not encoded.strip():
        raise BadRequest('JSON body needs "image": the image file as a base64 string', code="missing_image")
    image = _base64_image(encoded)
    threshold = document["threshold"] if "threshold" in document else query.get("threshold")
    max_results = document["max_results"] if "max_results" in document else query.get("max_results")
    return PredictRequest(
        image=image,
        threshold=_threshold(threshold, from_query="threshold" not in document),
        max_results=_max_results(max_results, from_query="max_results" not in document),
    )


def _base64_image(encoded: str) -> bytes:
    if encoded.startswith("data:") and "," in encoded:
        encoded = encoded.split(",", 1)[1]  # a data URL, as browsers' FileReader gives it
    compact = "".join(encoded.split())  # some encoders wrap lines
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as error:
        raise BadRequest(f'"image" is not valid base64: {error}', code="invalid_base64") from None


def _threshold(value: Any, *, from_query: bool) -> float | None:
    if value is None:
        return None
    message = f"threshold must be a number between 0 and 1, got {value!r}"
    if from_query and isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise BadRequest(message, code="invalid_threshold") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequest(message, code="invalid_threshold")
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise BadRequest(message, code="invalid_threshold")
    return float(value)


def _max_results(value: Any, *, from_query: bool) -> int | None:
    if value is None:
        return None
    message = f"max_results must be an integer from 1 to {MAX_RESULTS_LIMIT}, got {value!r}"
    if from_query and isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise BadRequest(message, code="invalid_max_results") from None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_RESULTS_LIMIT:
        raise BadRequest(message, code="invalid_max_results")
    return value


def predict_request(model_id: str, body: bytes, content_type: str | None, query: Mapping[str, str] | None) -> dict:
    """``POST /v1/models/{id}/predict``: the answer document, or a SightlineError with its HTTP status."""
    request = parse_predict_request(body, content_type, query)
    _model, version = model_registry.serving_version(model_id)  # 404 unknown, 409 not trained yet
    image = decode_image(request.image)
    predictor = load_predictor(model_id, version)
    task = predictor.task
    max_results = DEFAULT_MAX_RESULTS[task] if request.max_results is None else request.max_results
    return {
        "model_id": model_id,
        "version": int(version["version"]),
        "task": task,
        "image": {"width": image.width, "height": image.height},
        # No threshold given: each class's assumed threshold (labels.json), else the task's default.
        "predictions": predictor.predict(image, request.threshold, max_results),
    }


def predict_event(event: dict[str, Any]) -> dict:
    """The answer to a predict proxy event (a SightlineError for every refusal)."""
    model_id = (event.get("pathParameters") or {}).get("id") or ""
    return predict_request(
        model_id, event_body(event), event_header(event, "content-type"), event.get("queryStringParameters") or {}
    )
