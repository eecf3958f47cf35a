"""Validation metrics: classification accuracy, multi-label average precision and F1, and detection mAP computed
by pycocotools' COCOeval.

The multi-label metrics are the ones scikit-learn's ``average_precision_score`` and ``f1_score`` (and
torchmetrics' ``MultilabelAveragePrecision``) report. Neither library is in the training image, and pulling
scikit-learn (with scipy) into it for a few lines of arithmetic is not worth the size, so they are computed here;
tests/unit/training/test_metrics.py checks them against values worked out by hand and scikit-learn's documented
examples.
"""
from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def accuracy(predicted: Sequence[int], expected: Sequence[int]) -> float:
    if len(predicted) != len(expected):
        raise ValueError(f"{len(predicted)} predictions for {len(expected)} examples")
    if not expected:
        raise ValueError("accuracy of no examples")
    return sum(int(p == e) for p, e in zip(predicted, expected)) / len(expected)


@dataclass
class ImageBoxes:
    """Boxes of one image, XYXY pixels; ``labels`` are 1-based class ids; ``scores`` only for predictions."""

    boxes: np.ndarray  # [N, 4]
    labels: np.ndarray  # [N]
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))  # [N]


def detection_map(ground_truth: Sequence[ImageBoxes], predictions: Sequence[ImageBoxes],
                  num_classes: int) -> dict[str, float]:
    """COCO bbox AP over all areas at 100 detections: ``map_50`` (IoU 0.5) and ``map_50_95`` (IoU .5:.95).

    Images without ground truth still count (their detections are false positives). Classes without ground
    truth are left out by COCOeval; with no ground truth at all there is nothing to find and both are 0.0.
    """
    if len(ground_truth) != len(predictions):
        raise ValueError(f"{len(predictions)} prediction sets for {len(ground_truth)} images")
    categories = [{"id": i, "name": str(i)} for i in range(1, num_classes + 1)]
    images = [{"id": i + 1} for i in range(len(ground_truth))]
    annotations = []
    for image_id, truth in enumerate(ground_truth, start=1):
        for box, label in zip(np.asarray(truth.boxes, dtype=float).reshape(-1, 4), truth.labels):
            width, height = box[2] - box[0], box[3] - box[1]
            annotations.append({
                # COCOeval marks a matched detection with the ground truth's id, so ids must not be 0.
                "id": len(annotations) + 1, "image_id": image_id, "category_id": int(label),
                "bbox": [float(box[0]), float(box[1]), float(width), float(height)],
                "area": float(width * height), "iscrowd": 0,
            })
    if not annotations:
        return {"map_50": 0.0, "map_50_95": 0.0}
    detections = []
    for image_id, predicted in enumerate(predictions, start=1):
        boxes = np.asarray(predicted.boxes, dtype=float).reshape(-1, 4)
        for box, label, score in zip(boxes, predicted.labels, predicted.scores):
            width, height = box[2] - box[0], box[3] - box[1]
            detections.append({
                "id": len(detections) + 1, "image_id": image_id, "category_id": int(label),
                "bbox": [float(box[0]), float(box[1]), float(width), float(height)],
                "area": float(width * height), "iscrowd": 0, "score": float(score),
            })
    # pycocotools prints progress to stdout; keep the job log to our own lines.
    with contextlib.redirect_stdout(io.StringIO()):
        truth_index = _coco({"images": images, "categories": categories, "annotations": annotations})
        # Built like COCO.loadRes does, which cannot take an empty result list.
        detection_index = _coco({"images": images, "categories": categories, "annotations": detections})
        evaluation = COCOeval(truth_index, detection_index, iouType="bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    # stats[0]: AP @ IoU .50:.95, all areas, 100 dets; stats[1]: AP @ IoU .50. -1 means "no ground truth".
    return {"map_50": max(0.0, float(evaluation.stats[1])), "map_50_95": max(0.0, float(evaluation.stats[0]))}


# A multi-label prediction counts when its sigmoid score is at or above this: what the predict function
# returns at the default threshold, and where the logit crosses 0.
MULTILABEL_THRESHOLD = 0.5


def average_precision(scores: np.ndarray, truth: np.ndarray) -> float | None:
    """Area under one class's precision-recall curve as a step function: sum over thresholds of
    (R_n - R_(n-1)) * P_n, with no interpolation (scikit-learn's ``average_precision_score``).

    Equal scores form one threshold (a tie is admitted all at once), so the order of ties does not matter.
    None when the class has no positive example: recall, and so AP, is undefined.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    truth = np.asarray(truth, dtype=bool).reshape(-1)
    if len(scores) != len(truth):
        raise ValueError(f"{len(scores)} scores for {len(truth)} examples")
    positives = int(truth.sum())
    if positives == 0:
        return None
    order = np.argsort(-scores, kind="stable")
    scores, truth = scores[order], truth[order]
    # The last position of each run of equal scores: where a threshold at that score cuts.
    cuts = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    true_positives = np.cumsum(truth)[cuts]
    precision = true_positives / (cuts + 1)
    recall = true_positives / positives
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def _ratio(numerator: float, denominator: float) -> float | None:
    return float(numerator / denominator) if denominator else None


def multilabel_metrics(scores: np.ndarray, truth: np.ndarray,
                       threshold: float = MULTILABEL_THRESHOLD) -> dict[str, object]:
    """Metrics of sigmoid ``scores`` [N, C] against multi-hot ``truth`` [N, C].

    ``mean_average_precision``: the mean of the classes' average precision; ``f1_micro`` (true and false
    positives and negatives counted over all classes) and ``f1_macro`` (the mean of the classes' F1) at
    ``threshold``; ``per_class``: per class (in column order) ``average_precision``, ``precision``, ``recall``,
    ``f1`` and ``support`` (positive examples). A ratio whose denominator is 0 is None (a class never
    predicted has no precision, a class with no positive example no recall or AP), and the macro means leave
    out classes without a positive example, as COCOeval and torchmetrics do. No positive at all: means are 0.
    """
    scores = np.asarray(scores, dtype=np.float64)
    truth = np.asarray(truth, dtype=bool)
    if scores.shape != truth.shape or scores.ndim != 2:
        raise ValueError(f"scores {scores.shape} and truth {truth.shape} must both be [examples, classes]")
    predicted = scores >= threshold
    true_positives = (predicted & truth).sum(axis=0)
    false_positives = (predicted & ~truth).sum(axis=0)
    false_negatives = (~predicted & truth).sum(axis=0)
    support = truth.sum(axis=0)
    per_class = []
    for c in range(scores.shape[1]):
        tp, fp, fn = int(true_positives[c]), int(false_positives[c]), int(false_negatives[c])
        per_class.append({
            "average_precision": average_precision(scores[:, c], truth[:, c]),
            "precision": _ratio(tp, tp + fp),
            "recall": _ratio(tp, tp + fn),
            "f1": _ratio(2 * tp, 2 * tp + fp + fn) if support[c] else None,
            "support": int(support[c]),
        })
    measured = [entry for entry in per_class if entry["support"]]
    tp, fp, fn = int(true_positives.sum()), int(false_positives.sum()), int(false_negatives.sum())
    return {
        "mean_average_precision": float(np.mean([e["average_precision"] for e in measured])) if measured else 0.0,
        "f1_micro": _ratio(2 * tp, 2 * tp + fp + fn) or 0.0,
        "f1_macro": float(np.mean([e["f1"] for e in measured])) if measured else 0.0,
        "per_class": per_class,
    }


def _coco(dataset: dict) -> COCO:
    index = COCO()
    index.dataset = dataset
    index.createIndex()
    return index
