"""The predict request: read from its proxy event, checked, and answered.

Two routes share it: ``POST /v1/models/{id}/predict`` (one model) and ``POST /v1/predict`` (several models at
once, ``models`` in the body: Watson's ``classifier_ids``). The image comes as

- a raw ``image/*`` body (options in the query string);
- a raw ``application/zip`` body: up to 20 images, answered per image;
- JSON ``{"image": "<base64>"}`` or ``{"s3_uri": "s3://..."}`` (this deployment's buckets only), options beside;
- ``multipart/form-data`` with ``images_file`` (one image, or a zip of up to 20), options as form fields.

Options: ``threshold``, ``max_results``, ``version`` (pin a version instead of the serving one) and ``classes``
(only these labels). Every way a request can be wrong is a 400, 404, 409, 413 or 415 with the error shape; the
answer's contract is in docs/architecture.md, "Predict".
"""
from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from sightline.config import get_settings
from sightline.errors import BadRequest, NotFound, PayloadTooLarge, SightlineError, UnsupportedMediaType
from sightline.http_events import event_body, event_header, json_document
from sightline.imaging import decode_image, source_size
from sightline.inference import DEFAULT_MAX_RESULTS, load_predictor
from sightline.predict_inputs import (
    FORM_MEDIA_TYPE,
    IMAGES_FIELD,
    ZIP_MEDIA_TYPES,
    NamedImage,
    images_of,
    parse_form,
    s3_object,
    zip_images,
)
from sightline.serving import serving

MAX_RESULTS_LIMIT = 100
MAX_MODELS_PER_REQUEST = 10
MAX_CLASSES_PER_REQUEST = 1000
MAX_CLASS_NAME_CHARS = 256
JSON_MEDIA_TYPE = "application/json"
_OPTIONS = ("threshold", "max_results", "version", "classes")


@dataclass(frozen=True)
class ModelChoice:
    model_id: str
    version: int | None = None  # None: the serving version


@dataclass(frozen=True)
class PredictRequest:
    images: list[NamedImage]
    per_image: bool  # a zip: the answer lists each image
    threshold: float | None  # None: each class's assumed threshold
    max_results: int | None  # None: the task's default
    classes: tuple[str, ...] | None  # None: every class
    models: list[ModelChoice] = field(default_factory=list)

    @property
    def image(self) -> bytes:
        return self.images[0].data


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_predict_request(body: bytes, content_type: str | None, query: Mapping[str, str] | None, *,
                          model_id: str | None = None) -> PredictRequest:
    """The images and options of a predict call, checked. ``model_id`` None: the several-models route, whose
    body names the models."""
    query = dict(query or {})
    media_type = _media_type(content_type)
    max_bytes = get_settings().max_image_bytes
    text_options = set(query)  # options given as text (query string, form fields): numbers still to be read
    if media_type == JSON_MEDIA_TYPE:
        document, images, per_image = _json_request(body, max_bytes)
        options = {**{name: query[name] for name in _OPTIONS if name in query}, **document}
        text_options -= set(document)  # JSON fields win over the query string, and are JSON's numbers
    elif media_type == FORM_MEDIA_TYPE:
        form = parse_form(body, content_type or "")
        if not form.file:
            raise BadRequest(f"the form needs an {IMAGES_FIELD} field: one image file, or a zip of images",
                             code="missing_image")
        options = {**query, **form.fields}
        text_options |= set(form.fields)
        images, per_image = images_of(form.file, form.filename)
    elif media_type in ZIP_MEDIA_TYPES:
        _check_body_size(body, len(body), max_bytes * 4)
        options, images, per_image = query, zip_images(body), True
    elif media_type.startswith("image/"):
        _check_body_size(body, len(body), max_bytes)
        options, images, per_image = query, [NamedImage(None, body)], False
    else:
        raise UnsupportedMediaType(
            f"Content-Type {content_type or '(none)'!s} is not supported: send image/jpeg (or another image type), "
            'application/zip, multipart/form-data with images_file, or application/json {"image": "<base64>"} '
            'or {"s3_uri": "s3://..."}',
        )
    request = PredictRequest(
        images=images,
        per_image=per_image,
        threshold=threshold_option(options.get("threshold"), from_text="threshold" in text_options),
        max_results=max_results_option(options.get("max_results"), from_text="max_results" in text_options),
        classes=classes_option(options.get("classes")),
        models=_models(model_id, options.get("models"), options.get("version")),
    )
    return request


def _check_body_size(body: bytes, size: int, limit: int) -> None:
    if size > limit:
        raise PayloadTooLarge(f"body is {size} bytes; the limit is {limit} bytes", code="image_too_large")
    if not body:
        raise BadRequest("request body is empty: send the image file as the body", code="invalid_image")


def _json_request(body: bytes, max_bytes: int) -> tuple[dict[str, Any], list[NamedImage], bool]:
    """The options the JSON body gives, and its images."""
    # Base64 costs a third more than the image, plus room for the other fields.
    if len(body) > max_bytes * 4 // 3 + 64 * 1024:
        raise PayloadTooLarge(f"body is {len(body)} bytes; the image limit is {max_bytes} bytes", code="image_too_large")
    document = json_document(body, what="body")
    if not isinstance(document, dict):
        raise BadRequest('JSON body must be an object like {"image": "<base64>"}', code="invalid_json")
    encoded, uri = document.get("image"), document.get("s3_uri")
    if encoded is not None and uri is not None:
        raise BadRequest('send either "image" or "s3_uri", not both', code="invalid_json")
    if uri is not None:
        if not isinstance(uri, str):
            raise BadRequest('"s3_uri" must be a string like "s3://bucket/key"', code="invalid_s3_uri")
        data, key = s3_object(uri)
        images, per_image = images_of(data, key)
    else:
        if not isinstance(encoded, str) or not encoded.strip():
            raise BadRequest('JSON body needs "image" (the image file as a base64 string) or "s3_uri"',
                             code="missing_image")
        images, per_image = [NamedImage(None, _base64_image(encoded))], False
    return {name: document[name] for name in (*_OPTIONS, "models") if name in document}, images, per_image


def _base64_image(encoded: str) -> bytes:
    if encoded.startswith("data:") and "," in encoded:
        encoded = encoded.split(",", 1)[1]  # a data URL, as browsers' FileReader gives it
    compact = "".join(encoded.split())  # some encoders wrap lines
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as error:
        raise BadRequest(f'"image" is not valid base64: {error}', code="invalid_base64") from None


def threshold_option(value: Any, *, from_text: bool) -> float | None:
    if value is None:
        return None
    message = f"threshold must be a number between 0 and 1, got {value!r}"
    if from_text and isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise BadRequest(message, code="invalid_threshold") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequest(message, code="invalid_threshold")
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise BadRequest(message, code="invalid_threshold")
    return float(value)


def _whole_number(value: Any, name: str, low: int, high: int, code: str) -> int | None:
    if value is None:
        return None
    message = f"{name} must be an integer from {low} to {high}, got {value!r}"
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise BadRequest(message, code=code) from None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadRequest(message, code=code)
    return value


def max_results_option(value: Any, *, from_text: bool) -> int | None:
    if isinstance(value, str) and not from_text:
        raise BadRequest(f"max_results must be an integer from 1 to {MAX_RESULTS_LIMIT}, got {value!r}",
                         code="invalid_max_results")
    return _whole_number(value, "max_results", 1, MAX_RESULTS_LIMIT, "invalid_max_results")


def classes_option(value: Any) -> tuple[str, ...] | None:
    """A list of labels, or one comma-separated string (query strings and form fields)."""
    if value is None:
        return None
    names = value.split(",") if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise BadRequest(f"classes must be a list of class names or a comma-separated string, got {str(value)[:200]!r}",
                         code="invalid_classes")
    names = [name.strip() for name in names if name.strip()]
    if not names or len(names) > MAX_CLASSES_PER_REQUEST:
        raise BadRequest(f"classes must name 1 to {MAX_CLASSES_PER_REQUEST} classes, got {len(names)}",
                         code="invalid_classes")
    too_long = next((name for name in names if len(name) > MAX_CLASS_NAME_CHARS), None)
    if too_long is not None:
        raise BadRequest(f"class names are at most {MAX_CLASS_NAME_CHARS} characters; one has {len(too_long)}",
                         code="invalid_classes")
    return tuple(dict.fromkeys(names))


def version_option(value: Any) -> int | None:
    return _whole_number(value, "version", 1, 2**31 - 1, "invalid_version")


def _models(model_id: str | None, models: Any, version: Any) -> list[ModelChoice]:
    if model_id is not None:
        if models is not None:
            raise BadRequest("models belongs to POST /v1/predict; this route predicts with the model in its path",
                             code="invalid_models")
        return [ModelChoice(model_id, version_option(version))]
    if version is not None:
        raise BadRequest('version pins one model: give each model as {"model_id": "...", "version": 2} in models',
                         code="invalid_version")
    if isinstance(models, str):  # a form field or query string: comma-separated ids
        models = [part.strip() for part in models.split(",") if part.strip()]
    if not isinstance(models, list) or not models:
        raise BadRequest(f'models must list 1 to {MAX_MODELS_PER_REQUEST} model ids (or {{"model_id", "version"}} '
                         "objects)", code="invalid_models")
    if len(models) > MAX_MODELS_PER_REQUEST:
        raise BadRequest(f"models lists {len(models)} models; at most {MAX_MODELS_PER_REQUEST} per request",
                         code="invalid_models")
    choices = []
    for entry in models:
        if isinstance(entry, str) and entry:
            choices.append(ModelChoice(entry))
        elif isinstance(entry, dict) and isinstance(entry.get("model_id"), str) and entry["model_id"]:
            choices.append(ModelChoice(entry["model_id"], version_option(entry.get("version"))))
        else:
            raise BadRequest(f"each entry of models is a model id or {{\"model_id\", \"version\"}}, got {str(entry)[:200]!r}",
                             code="invalid_models")
    return choices


# ---------------------------------------------------------------- answers


def _decode_for(predictor: Any, data: bytes) -> Image.Image:
    # A JPEG much bigger than the model's input is decoded at a reduced scale (decode_image's ``fit``): a fraction
    # of the work, and what the evaluation job measures too (it decodes the same way).
    return decode_image(data, fit=(predictor.input_spec.width, predictor.input_spec.height))


def _size(image: Image.Image) -> dict[str, int]:
    width, height = source_size(image)  # the image as sent, also when it was decoded smaller
    return {"width": width, "height": height}


def _answer_images(images: list[NamedImage], predictor: Any, request: PredictRequest, max_results: int) -> list[dict]:
    answers = []
    for named in images:
        try:
            if named.error is not None:
                raise named.error
            image = _decode_for(predictor, named.data)
        except (BadRequest, PayloadTooLarge) as error:
            answers.append({"name": named.name, **error.to_dict()})
            continue
        answers.append({
            "name": named.name,
            "image": _size(image),
            "predictions": predictor.predict(image, request.threshold, max_results, request.classes),
        })
    return answers


def answer_for_model(choice: ModelChoice, request: PredictRequest) -> dict:
    """One model's answer to the request (a SightlineError for a refusal that concerns the whole request)."""
    _model, version = serving(choice.model_id, choice.version)  # 404 unknown, 409 not ready
    predictor = load_predictor(choice.model_id, version)  # first: the decoder needs its input size
    if request.classes is not None:
        unknown = [name for name in request.classes if name not in predictor.classes]
        if unknown:
            raise BadRequest(f"classes names labels this version does not know: {unknown[:20]}; it knows "
                             f"{predictor.classes[:50]}", code="invalid_classes")
    task = predictor.task
    max_results = DEFAULT_MAX_RESULTS[task] if request.max_results is None else request.max_results
    answer: dict[str, Any] = {"model_id": choice.model_id, "version": int(version["version"]), "task": task}
    if request.per_image:
        answer["images"] = _answer_images(request.images, predictor, request, max_results)
        return answer
    image = _decode_for(predictor, request.image)
    # No threshold given: each class's assumed threshold (labels.json), else the task's default.
    answer["image"] = _size(image)
    answer["predictions"] = predictor.predict(image, request.threshold, max_results, request.classes)
    return answer


def predict_request(model_id: str, body: bytes, content_type: str | None, query: Mapping[str, str] | None) -> dict:
    """``POST /v1/models/{id}/predict``: the answer document, or a SightlineError with its HTTP status."""
    request = parse_predict_request(body, content_type, query, model_id=model_id)
    return answer_for_model(request.models[0], request)


def predict_many(body: bytes, content_type: str | None, query: Mapping[str, str] | None) -> dict:
    """``POST /v1/predict``: one answer per model, in the order asked; a model that cannot answer (unknown, not
    ready, a class it does not know) gets its error in its place while the others answer."""
    request = parse_predict_request(body, content_type, query, model_id=None)
    results = []
    for choice in request.models:
        try:
            results.append(answer_for_model(choice, request))
        except (NotFound, BadRequest, SightlineError) as error:
            if error.status >= 500:
                raise
            results.append({"model_id": choice.model_id, **error.to_dict()})
    return {"results": results}


def predict_event(event: dict[str, Any]) -> dict:
    """The answer to a predict proxy event (a SightlineError for every refusal): the route with a model id in
    its path predicts with that model, the other with the models its body names."""
    model_id = (event.get("pathParameters") or {}).get("id")
    body, content_type = event_body(event), event_header(event, "content-type")
    query = event.get("queryStringParameters") or {}
    if model_id is None:
        return predict_many(body, content_type, query)
    return predict_request(model_id, body, content_type, query)
