"""Predictions: ONNX sessions for trained versions, cached per warm container.

Contracts (``labels.json``, model inputs and outputs, the answer) are in docs/architecture.md; the HTTP request
is read in ``sightline.predict_request``. onnxruntime is imported lazily: only the predict function ships it,
and the rest of the layer imports this package freely.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
import uuid
from collections import OrderedDict
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sightline.contract import CLASSIFICATION, DETECTION, LABELS_FILE, LABELS_FORMAT, MODEL_FILE, MULTILABEL
from sightline.imaging import InputSpec, source_size, to_tensor

if TYPE_CHECKING:
    from PIL import Image

# Without a caller's threshold each class's assumed threshold applies (labels.json ``thresholds``: the score of
# its best F1 on the validation set). These are for classes without one, and for versions trained before them: a
# detector's boxes are noise below 0.5; a classifier ranks every class; a multi-label model answers the classes
# whose sigmoid says "more likely present than not".
DEFAULT_THRESHOLD = {CLASSIFICATION: 0.0, DETECTION: 0.5, MULTILABEL: 0.5}
DEFAULT_MAX_RESULTS = {CLASSIFICATION: 5, DETECTION: 20, MULTILABEL: 100}
# The outputs each task's model gives, by role (labels.json ``outputs`` maps a role to the graph's name).
OUTPUT_ROLES = {CLASSIFICATION: ("logits",), MULTILABEL: ("logits",), DETECTION: ("boxes", "scores", "labels")}

# Sessions kept per warm container. A Lambda container serves one request at a time and a few models fit in
# its memory and in /tmp; more would trade memory for cold loads that are rare anyway.
MODEL_CACHE_SIZE = 3


class ModelArtifactError(RuntimeError):
    """A trained version whose artifacts do not match the contract: a server fault, never the caller's."""


def _output_names(labels: dict, roles: tuple[str, ...]) -> list[str]:
    outputs = labels.get("outputs") or {}
    return [str(outputs.get(role, role)) for role in roles]


# Lambda's CPU share grows with memory: one vCPU's worth at 1,769 MB, up to 6 at 10,240 MB.
LAMBDA_MB_PER_VCPU = 1769
THREADS_VARIABLE = "SIGHTLINE_PREDICT_THREADS"  # an explicit count (benchmarks, a local stack on a shared host)


def predict_threads(environ: dict[str, str] | os._Environ[str] = os.environ) -> int:
    """onnxruntime's threads for one run: the vCPUs the function's memory buys, never more than the cores seen.

    Lambda shows every container two or more cores whatever its share, so counting cores would give a 2 GB
    function (1.16 vCPUs) two threads that take turns on one vCPU's quota.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if environ.get(THREADS_VARIABLE):
        return max(1, int(environ[THREADS_VARIABLE]))
    memory = environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
    if memory:
        return max(1, min(cores, round(int(memory) / LAMBDA_MB_PER_VCPU)))
    return max(1, cores)


def _session_options(ort: Any) -> Any:
    options = ort.SessionOptions()
    # One request at a time, so every thread the function's vCPUs allow goes to one run.
    options.intra_op_num_threads = predict_threads()
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
        if self.task not in OUTPUT_ROLES:
            raise ModelArtifactError(f"labels.json task {self.task!r} is not one this version can serve")
        self.classes: list[str] = [str(name) for name in labels.get("classes") or []]
        if not self.classes:
            raise ModelArtifactError("labels.json lists no classes")
        # A classifier trained with negatives has one logit more, the last: "none of the classes". It takes its
        # share of the softmax and is never reported.
        self.background = labels.get("background", False)
        if not isinstance(self.background, bool) or (self.background and self.task != CLASSIFICATION):
            raise ModelArtifactError(f"labels.json background {self.background!r} does not fit a {self.task} model")
        try:
            self.input_spec = InputSpec.from_labels(labels)
        except ValueError as error:
            raise ModelArtifactError(str(error)) from None
        self._output_names = _output_names(labels, OUTPUT_ROLES[self.task])
        self.thresholds = _class_thresholds(labels, self.classes, DEFAULT_THRESHOLD[self.task])

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

    def predict(self, image: Image.Image, threshold: float | None, max_results: int,
                classes: Collection[str] | None = None) -> list[dict]:
        """Predictions for an upright RGB image, best first: ``{"label", "score"}`` plus ``"box"`` for detectors.
        ``threshold`` None: each class's assumed threshold (``thresholds``); ``classes``: only these labels (before
        ``max_results`` is applied, so asking for one class never loses its results to others)."""
        tensor = to_tensor(image, self.input_spec)
        results = self._session.run(self._output_names, {self.input_spec.name: tensor})
        cutoffs = self._cutoffs(threshold, classes)
        if self.task == DETECTION:
            return self._detections(results, source_size(image), cutoffs, max_results)
        return self._classifications(results[0], cutoffs, max_results)

    def _cutoffs(self, threshold: float | None, classes: Collection[str] | None = None) -> np.ndarray:
        """The lowest reported score per class: the caller's for every class, or each class's assumed one; an
        infinite one for the classes the caller left out."""
        cutoffs = self.thresholds.copy() if threshold is None else np.full(len(self.classes), float(threshold))
        if classes is not None:
            wanted = set(classes)
            cutoffs[[index for index, name in enumerate(self.classes) if name not in wanted]] = np.inf
        return cutoffs

    def _classifications(self, logits: Any, cutoffs: np.ndarray, max_results: int) -> list[dict]:
        """Classification: the softmax (the background's share dropped); multilabel: each class's sigmoid."""
        values = np.asarray(logits, dtype=np.float64).reshape(-1)
        expected = len(self.classes) + int(self.background)
        if values.size != expected:
            raise ModelArtifactError(f"model gives {values.size} logits for {len(self.classes)} classes"
                                     + (" and the background" if self.background else ""))
        scores = sigmoid(values) if self.task == MULTILABEL else softmax(values)[: len(self.classes)]
        ranked = np.argsort(-scores, kind="stable")
        kept = [int(i) for i in ranked if scores[i] >= cutoffs[i]][:max_results]
        return [{"label": self.classes[i], "score": _score(scores[i])} for i in kept]

    def _detections(
        self, results: list[Any], image_size: tuple[int, int], cutoffs: np.ndarray, max_results: int
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
        # Boxes come in the resized input's pixels; the caller wants the pixels of the image it sent (which
        # decode_image may have decoded smaller: source_size).
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]] * (width / self.input_spec.width), 0, width)
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]] * (height / self.input_spec.height), 0, height)
        known = (label_ids >= 1) & (label_ids <= len(self.classes))  # 0 is background
        # Each box against its class's cutoff (an unknown label's is infinite: it is dropped anyway).
        cutoffs = np.where(known, cutoffs[np.clip(label_ids - 1, 0, len(self.classes) - 1)], np.inf)
        keep = (
            np.isfinite(scores)
            & (scores >= cutoffs)
            & known
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


def _class_thresholds(labels: dict, classes: list[str], default: float) -> np.ndarray:
    """labels.json ``thresholds`` ({class: score in [0, 1]}) as one cutoff per class; ``default`` where absent."""
    given = labels.get("thresholds") or {}
    if not isinstance(given, dict):
        raise ModelArtifactError(f"labels.json thresholds must be an object of class: score, got {given!r}")
    cutoffs = np.full(len(classes), float(default))
    for index, name in enumerate(classes):
        value = given.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise ModelArtifactError(f"labels.json threshold of {name!r} is {value!r}, not a score from 0 to 1")
        cutoffs[index] = float(value)
    return cutoffs


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - np.max(logits))  # shifted so large logits do not overflow
    return shifted / shifted.sum()


def sigmoid(logits: np.ndarray) -> np.ndarray:
    # exp of a negative number only, so large logits of either sign do not overflow.
    e = np.exp(-np.abs(logits))
    return np.where(logits >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


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
        integrity = version.get("integrity") or {}  # absent: recorded before versions pinned their objects
        try:
            model_path = _fetch(artifacts["model"], directory / MODEL_FILE, integrity.get("model"))
            labels = json.loads(_fetch(artifacts["labels"], directory / LABELS_FILE, integrity.get("labels")).read_text())
            return Predictor(model_path, labels)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)  # nothing uncached stays in /tmp
            raise


def _fetch(artifact: str, path: Path, pin: dict | None = None) -> Path:
    """The artifact at ``path``, downloaded unless an earlier invocation of this container already did (only a
    verified download ever lands there). ``pin`` ({"version_id", "sha256"}, as the version recorded it): exactly
    that S3 version is downloaded and must hash to that sha256, else :class:`ModelArtifactError`."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    # Imported here: boto3 is most of a fresh process's import time, and a predictor from a local file
    # (evaluation, benchmarks) never needs it.
    from sightline import aws, keys
    from sightline.config import get_settings

    partial = path.with_name(f"{path.name}.{uuid.uuid4().hex}.part")
    try:
        bucket, key = keys.split_location(artifact, get_settings().artifact_bucket)
        version_id = (pin or {}).get("version_id")
        aws.client("s3").download_file(bucket, key, str(partial),
                                       ExtraArgs={"VersionId": version_id} if version_id else None)
        if pin and pin.get("sha256"):
            _verify(partial, str(pin["sha256"]), artifact)
        os.replace(partial, path)  # whole or absent: a crash mid-download never leaves a truncated model
    finally:
        partial.unlink(missing_ok=True)
    return path


def _verify(path: Path, expected: str, artifact: str) -> None:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1024 * 1024), b""):
            digest.update(chunk)
    if digest.hexdigest() != expected.lower():
        # A server-side fault: the object is not the one the version recorded (replaced or corrupted).
        raise ModelArtifactError(f"{artifact} has sha256 {digest.hexdigest()}, but its version recorded {expected}; "
                                 "refusing to serve a model that is not the one trained")


_predictors = PredictorCache()


def load_predictor(model_id: str, version: dict) -> Predictor:
    """The process-wide cached predictor of one version of a model."""
    return _predictors.get(model_id, version)


def clear_predictor_cache() -> None:
    _predictors.clear()
