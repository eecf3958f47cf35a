"""Predictions: ONNX sessions for trained versions, cached per warm container, and the predict request itself.

Contracts (``labels.json``, model inputs and outputs, the answer) are in docs/architecture.md. onnxruntime is
imported lazily: only the predict function ships it, and the rest of the layer imports this package freely.
"""
from __future__ import annotations

import base64
import binascii
import json
import math
import os
import re
import shutil
import tempfile
import threading
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from sightline import aws, keys, model_registry
from sightline.config import get_settings
from sightline.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from sightline.imaging import InputSpec, decode_image, to_tensor

LABELS_FORMAT = "sightline.labels/v1"
CLASSIFICATION = "classification"
DETECTION = "detection"

# A detector's boxes are noise below this by default; a classifier ranks every class unless asked otherwise.
DEFAULT_THRESHOLD = {CLASSIFICATION: 0.0, DETECTION: 0.5}
DEFAULT_MAX_RESULTS = {CLASSIFICATION: 5, DETECTION: 20}
MAX_RESULTS_LIMIT = 100

# Sessions kept per warm container. A Lambda container serves one request at a time and a few models fit in
# its memory and in /tmp; more would trade memory for cold loads that are rare anyway.
MODEL_CACHE_SIZE = 3

JSON_MEDIA_TYPE = "application/json"


class ModelArtifactError(RuntimeError):
    """A trained version whose artifacts do not match the contract: a server fault, never the caller's."""


def _output_names(labels: dict, roles: tuple[str, ...]) -> list[str]:
    outputs = labels.get("outputs") or {}
    return [str(outputs.get(role, role)) for role in roles]


def _session_options(ort: Any) -> Any:
    options = ort.SessionOptions()
    # Lambda gives 1 to 6 vCPUs depending on memory; one request at a time, so every core goes to one run.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    options.intra_op_num_threads = max(1, cores)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: warnings about unused initialisers fill the logs otherwise
    return options


class Predictor:
    """One trained version ready to answer: its ONNX session and what ``labels.json`` says about it."""

    def __init__(self, model: bytes | str | os.PathLike[str], labels: dict) -> None:
        import onnxruntime as ort

        if labels.get("format") != LABELS_FORMAT:
            raise ModelArtifactError(f"labels.json format is {labels.get('format')!r}, expected {LABELS_FORMAT!r}")
        self.task: str = labels.get("task", "")
        if self.task not in (CLASSIFICATION, DETECTION):
            raise ModelArtifactError(f"labels.json task {self.task!r} is not one this version can serve")
        self.classes: list[str] = [str(name) for name in labels.get("classes") or []]
        if not self.classes:
            raise ModelArtifactError("labels.json lists no classes")
        try:
            self.input_spec = InputSpec.from_labels(labels)
        except ValueError as error:
            raise ModelArtifactError(str(error)) from None
        roles = ("logits",) if self.task == CLASSIFICATION else ("boxes", "scores", "labels")
        self._output_names = _output_names(labels, roles)

        source = bytes(model) if isinstance(model, (bytes, bytearray, memoryview)) else os.fspath(model)
        self._session = ort.InferenceSession(
            source, sess_options=_session_options(ort), providers=["CPUExecutionProvider"]
        )
        inputs = {node.name for node in self._session.get_inputs()}
        outputs = {node.name for node in self._session.get_outputs()}
        if self.input_spec.name not in inputs:
            raise ModelArtifactError(f"model has no input {self.input_spec.name!r} (it has {sorted(inputs)})")
        missing = [name for name in self._output_names if name not in outputs]
        if missing:
            raise ModelArtifactError(f"model has no output {missing} (it has {sorted(outputs)})")

    def predict(self, image: Image.Image, threshold: float, max_results: int) -> list[dict]:
        """Predictions for an upright RGB image, best first: ``{"label", "score"}`` plus ``"box"`` for detectors."""
        tensor = to_tensor(image, self.input_spec)
        results = self._session.run(self._output_names, {self.input_spec.name: tensor})
        if self.task == CLASSIFICATION:
            return self._classifications(results[0], threshold, max_results)
        return self._detections(results, image.size, threshold, max_results)

    def _classifications(self, logits: Any, threshold: float, max_results: int) -> list[dict]:
        values = np.asarray(logits, dtype=np.float64).reshape(-1)
        if values.size != len(self.classes):
            raise ModelArtifactError(f"model gives {values.size} logits for {len(self.classes)} classes")
        scores = softmax(values)
        ranked = np.argsort(-scores, kind="stable")
        kept = [int(i) for i in ranked if scores[i] >= threshold][:max_results]
        return [{"label": self.classes[i], "score": _score(scores[i])} for i in kept]

    def _detections(
        self, results: list[Any], image_size: tuple[int, int], threshold: float, max_results: int
    ) -> list[dict]:
        # A leading batch axis of 1, if the export kept one, is dropped by the reshapes.
        boxes = np.asarray(results[0], dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(results[1], dtype=np.float64).reshape(-1)
        label_ids = np.asarray(results[2]).reshape(-1).astype(np.int64)
        if not len(boxes) == len(scores) == len(label_ids):
            raise ModelArtifactError(
                f"detector outputs disagree: {len(boxes)} boxes, {len(scores)} scores, {len(label_ids)} labels"
            )
        width, height = image_size
        # Boxes come in the resized input's pixels; the caller wants the pixels of the image it sent.
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]] * (width / self.input_spec.width), 0, width)
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]] * (height / self.input_spec.height), 0, height)
        keep = (
            np.isfinite(scores)
            & (scores >= threshold)
            & (label_ids >= 1)  # 0 is background
            & (label_ids <= len(self.classes))
            & np.isfinite(boxes).all(axis=1)
            & (boxes[:, 2] > boxes[:, 0])  # a box that was wholly outside the image has nothing left of it
            & (boxes[:, 3] > boxes[:, 1])
        )
        kept = np.flatnonzero(keep)
        kept = kept[np.argsort(-scores[kept], kind="stable")][:max_results]
        return [
            {
                "label": self.classes[label_ids[i] - 1],
                "score": _score(scores[i]),
                "box": {
                    "x_min": round(float(boxes[i, 0]), 2),
                    "y_min": round(float(boxes[i, 1]), 2),
                    "x_max": round(float(boxes[i, 2]), 2),
                    "y_max": round(float(boxes[i, 3]), 2),
                },
            }
            for i in kept
        ]


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - np.max(logits))  # shifted so large logits do not overflow
    return shifted / shifted.sum()


def _score(value: float) -> float:
    return round(float(value), 6)


class PredictorCache:
    """Predictors by (model id, version), least recently used evicted past ``capacity``.

    Versions are immutable, so a cached session never goes stale; a promotion changes the serving version and
    with it the key. Artifacts land in ``root`` (under /tmp on Lambda) and leave it with their eviction.
    """

    def __init__(self, capacity: int = MODEL_CACHE_SIZE, root: Path | None = None) -> None:
        self.capacity = max(1, capacity)
        self.root = root or Path(tempfile.gettempdir()) / "sightline-models"
        self._predictors: OrderedDict[tuple[str, int], Predictor] = OrderedDict()
        self._lock = threading.Lock()  # the local stack may serve requests from threads

    def get(self, model_id: str, version: dict) -> Predictor:
        key = (model_id, int(version["version"]))
        with self._lock:
            predictor = self._predictors.get(key)
            if predictor is not None:
                self._predictors.move_to_end(key)
                return predictor
            predictor = self._load(key, version)
            self._predictors[key] = predictor
            while len(self._predictors) > self.capacity:
                evicted, _ = self._predictors.popitem(last=False)
                shutil.rmtree(self._directory(evicted), ignore_errors=True)
            return predictor

    def clear(self) -> None:
        with self._lock:
            for key in self._predictors:
                shutil.rmtree(self._directory(key), ignore_errors=True)
            self._predictors.clear()

    def _directory(self, key: tuple[str, int]) -> Path:
        model_id, version = key
        # The id reached us from a URL; keep it to harmless characters before it names a folder.
        return self.root / re.sub(r"[^A-Za-z0-9_-]", "_", model_id) / f"v{version}"

    def _load(self, key: tuple[str, int], version: dict) -> Predictor:
        artifacts = version.get("artifacts") or {}
        if not artifacts.get("model") or not artifacts.get("labels"):
            raise ModelArtifactError(f"version {key[1]} of model {key[0]!r} records no model/labels artifacts")
        directory = self._directory(key)
        try:
            model_path = _fetch(artifacts["model"], directory / "model.onnx")
            labels = json.loads(_fetch(artifacts["labels"], directory / "labels.json").read_text())
            return Predictor(model_path, labels)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)  # nothing uncached stays in /tmp
            raise


def _fetch(artifact: str, path: Path) -> Path:
    """The artifact at ``path``, downloaded unless an earlier invocation of this container already did."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{uuid.uuid4().hex}.part")
    try:
        bucket, key = keys.split_location(artifact, get_settings().artifact_bucket)
        aws.client("s3").download_file(bucket, key, str(partial))
        os.replace(partial, path)  # whole or absent: a crash mid-download never leaves a truncated model
    finally:
        partial.unlink(missing_ok=True)
    return path


_predictors = PredictorCache()


def load_predictor(model_id: str, version: dict) -> Predictor:
    """The process-wide cached predictor of one version of a model."""
    return _predictors.get(model_id, version)


def clear_predictor_cache() -> None:
    _predictors.clear()


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
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise BadRequest(f"body is not valid JSON: {error}", code="invalid_json") from None
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
    threshold = DEFAULT_THRESHOLD[task] if request.threshold is None else request.threshold
    max_results = DEFAULT_MAX_RESULTS[task] if request.max_results is None else request.max_results
    return {
        "model_id": model_id,
        "version": int(version["version"]),
        "task": task,
        "image": {"width": image.width, "height": image.height},
        "predictions": predictor.predict(image, threshold, max_results),
    }
