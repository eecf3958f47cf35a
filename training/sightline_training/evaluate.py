"""``python -m sightline_training evaluate``: a trained version measured on a dataset (the evaluation Batch job).

Reads the version's ``model.onnx`` and ``labels.json`` and the manifest the API built from the dataset, runs every
image through the predict function's own code (``sightline.inference.Predictor``, threshold 0) and measures the
answers with ``metrics.py``. Classes are matched by name: a dataset class the model does not know, or a model class
the dataset lacks, is reported in ``class_mismatch``; an image whose ground truth is only of classes unknown to the
model is counted and left out (detection and multilabel keep an image's known boxes or labels). Writes
``evaluation.json`` to the output URI; on failure ``failure.json`` with the reason. Exit codes: 0 done, 1 failed,
2 invalid input.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sightline.contract import (
    CLASSIFICATION,
    DETECTION,
    EVALUATION_FAILURE_FILE,
    EVALUATION_FILE,
    EVALUATION_FORMAT,
    LABELS_FILE,
    MODEL_FILE,
    EvaluationEnvironment,
)
from sightline_training import metrics, storage
from sightline_training.errors import InvalidInput, JobFailed, one_line
from sightline_training.manifest import Manifest, ManifestItem, load_manifest

log = logging.getLogger("sightline_training.evaluate")

# Boxes kept per image, as COCOeval counts them (maxDets 100).
MAX_DETECTIONS = 100


def _mismatch(model_classes: Sequence[str], dataset_classes: Sequence[str]) -> dict[str, list[str]]:
    return {"dataset_only": sorted(set(dataset_classes) - set(model_classes)),
            "model_only": sorted(set(model_classes) - set(dataset_classes))}


def _per_class(classes: Sequence[str], details: Mapping[str, Any]) -> dict[str, Any]:
    return {name: entry for name, entry in zip(classes, details.get("per_class") or [])}


def evaluate(predictor: Any, manifest: Manifest, image_paths: Mapping[str, Path]) -> dict[str, Any]:
    """The evaluation document (without the identifying fields) of ``predictor`` on ``manifest``'s items."""
    from sightline_training.data import load_as_predict_does

    if manifest.task != predictor.task:
        raise InvalidInput(f"the dataset's manifest is {manifest.task}, the model {predictor.task}")
    model_classes = list(predictor.classes)
    to_model = {i: model_classes.index(name) for i, name in enumerate(manifest.classes) if name in model_classes}
    unknown_images = 0
    partially_known = 0
    count = len(model_classes)
    rows: list[np.ndarray] = []
    expected: list[int] = []
    truth_rows: list[np.ndarray] = []
    ground_truth: list[metrics.ImageBoxes] = []
    predictions: list[metrics.ImageBoxes] = []
    for item in manifest.items:
        if not _known(item, manifest.task, to_model):
            unknown_images += 1
            continue
        image = load_as_predict_does(image_paths[item.id], predictor.input_spec)
        answers = predictor.predict(image, 0.0, MAX_DETECTIONS if manifest.task == DETECTION else count)
        if manifest.task == DETECTION:
            known = [box for box in item.boxes if box.label_id - 1 in to_model]
            partially_known += int(len(known) < len(item.boxes))
            ground_truth.append(metrics.ImageBoxes(
                boxes=np.array([[b.x_min, b.y_min, b.x_max, b.y_max] for b in known], dtype=float).reshape(-1, 4),
                labels=np.array([to_model[b.label_id - 1] + 1 for b in known], dtype=np.int64)))
            predictions.append(metrics.ImageBoxes(
                boxes=np.array([[a["box"][k] for k in ("x_min", "y_min", "x_max", "y_max")] for a in answers],
                               dtype=float).reshape(-1, 4),
                labels=np.array([model_classes.index(a["label"]) + 1 for a in answers], dtype=np.int64),
                scores=np.array([a["score"] for a in answers], dtype=float)))
            continue
        scores = np.zeros(count)
        for answer in answers:
            scores[model_classes.index(answer["label"])] = answer["score"]
        if manifest.task == CLASSIFICATION:
            # The last column is "none of the classes": what the softmax gave no reported class (a background).
            rows.append(np.append(scores, max(0.0, 1.0 - float(scores.sum()))))
            expected.append(count if item.class_index is None else to_model[item.class_index])
        else:
            known_indices = [to_model[i] for i in item.class_indices if i in to_model]
            partially_known += int(len(known_indices) < len(item.class_indices))
            truth = np.zeros(count, dtype=bool)
            truth[known_indices] = True
            rows.append(scores)
            truth_rows.append(truth)

    evaluated = len(manifest.items) - unknown_images
    if evaluated == 0:
        raise InvalidInput(f"none of the dataset's {len(manifest.items)} images is of a class the model knows "
                           f"(model: {', '.join(model_classes)}; dataset: {', '.join(manifest.classes)})")
    if manifest.task == DETECTION:
        result = metrics.detection_metrics(ground_truth, predictions, count)
    elif manifest.task == CLASSIFICATION:
        result = metrics.classification_metrics(np.array(rows), expected, count)
    else:
        result = metrics.multilabel_metrics(np.array(rows), np.array(truth_rows))
    details = result.pop(metrics.DETAILS)
    document: dict[str, Any] = {
        "format": EVALUATION_FORMAT,
        "task": manifest.task,
        "model_classes": model_classes,
        "dataset_classes": list(manifest.classes),
        "class_mismatch": _mismatch(model_classes, manifest.classes),
        "images": {"total": len(manifest.items), "evaluated": evaluated, "unknown_class": unknown_images,
                   "partly_unknown": partially_known},
        "metrics": {name: float(value) for name, value in result.items()},
        "per_class": _per_class(model_classes, details),
    }
    if "confusion_matrix" in details:
        document["confusion_matrix"] = {"labels": model_classes + ["(none)"], "rows": details["confusion_matrix"]}
    return document


def _known(item: ManifestItem, task: str, to_model: Mapping[int, int]) -> bool:
    """Whether the item can be scored: its ground truth (or a part of it) is in the model's classes, or it is a
    negative (no ground truth at all)."""
    if task == CLASSIFICATION:
        return item.class_index is None or item.class_index in to_model
    if task == DETECTION:
        return not item.boxes or any(box.label_id - 1 in to_model for box in item.boxes)
    return not item.class_indices or any(i in to_model for i in item.class_indices)


def run(manifest_uri: str, model_uri: str, output_uri: str, work_dir: Path) -> dict[str, Any]:
    """Download, evaluate, write ``evaluation.json``; the document written."""
    from sightline.inference import ModelArtifactError, Predictor
    from sightline_training.data import fetch_images

    manifest = load_manifest(manifest_uri)
    try:
        labels = json.loads(storage.read_bytes(storage.join(model_uri, LABELS_FILE)))
        model_path = work_dir / MODEL_FILE
        storage.download_file(storage.join(model_uri, MODEL_FILE), model_path)
    except storage.ObjectNotFound as error:
        raise InvalidInput(f"the version has no {error}") from None
    try:
        predictor = Predictor(model_path, labels)
    except ModelArtifactError as error:
        raise InvalidInput(f"the version's model cannot be served: {error}") from None
    paths = fetch_images(manifest.items, work_dir / "images")
    log.info("evaluating %s on %d images of %s", model_uri, len(manifest.items), ", ".join(manifest.datasets))
    document = evaluate(predictor, manifest, paths)
    document = {"model": model_uri, "manifest": manifest_uri, "datasets": list(manifest.datasets), **document}
    storage.write_bytes(storage.join(output_uri, EVALUATION_FILE), json.dumps(document, indent=1).encode(),
                        "application/json")
    log.info("evaluation written: %s", json.dumps(document["metrics"]))
    return document


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    if not logging.getLogger().handlers:
        logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="python -m sightline_training evaluate")
    parser.add_argument("--manifest", default=environ.get(EvaluationEnvironment.MANIFEST_URI))
    parser.add_argument("--model", default=environ.get(EvaluationEnvironment.MODEL_URI))
    parser.add_argument("--output", default=environ.get(EvaluationEnvironment.OUTPUT_URI))
    args = parser.parse_args(argv)
    missing = [name for name in ("manifest", "model", "output") if not getattr(args, name)]
    if missing:
        variables = ", ".join(variable.value for variable in EvaluationEnvironment)
        print(f"missing: {', '.join(missing)} (the flags, or the variables {variables})", file=sys.stderr)
        return 2
    code, reason = 0, None
    try:
        with tempfile.TemporaryDirectory(prefix="sightline-evaluation-") as work:
            run(args.manifest, args.model, args.output, Path(work))
    except JobFailed as error:
        code, reason = error.exit_code, one_line(error)
    except Exception as error:  # noqa: BLE001 - any other fault fails the evaluation with its reason
        log.exception("evaluation failed")
        code, reason = 1, f"{type(error).__name__}: {one_line(error)}"
    if reason is not None:
        log.error("evaluation failed: %s", reason)
        try:
            storage.write_bytes(storage.join(args.output, EVALUATION_FAILURE_FILE),
                                json.dumps({"reason": reason}).encode(), "application/json")
        except Exception:  # noqa: BLE001 - the job's own status still says it failed
            log.exception("could not write %s", EVALUATION_FAILURE_FILE)
        print(reason, file=sys.stderr, flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
