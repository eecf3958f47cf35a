"""Validation metrics from the field's reference implementations: scikit-learn for classifiers (single- and
multi-label), pycocotools' COCOeval for detectors.

Every task also gets, per class, an **assumed threshold**: the score at which the class's F1 on the validation
set is highest (Rekognition Custom Labels' term). The predict function uses it when a caller gives no
``threshold`` (labels.json ``thresholds``). Each function returns the headline numbers (kept per epoch in the
history) plus ``details``: what is not one number (per-class figures, confusion matrix, mAP by object size),
kept for the best epoch only.
"""
from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from sklearn import metrics as sk
from sklearn.exceptions import UndefinedMetricWarning

# The key of the non-scalar part of every result below.
DETAILS = "details"

# A multi-label prediction counts when its sigmoid score is at or above this: where the logit crosses 0, and
# what the per-class precision, recall and F1 of multi-label models are measured at.
MULTILABEL_THRESHOLD = 0.5

# COCOeval's summary, by index into ``stats`` (bbox, 100 detections unless said).
_COCO_STATS = {"map_50_95": 0, "map_50": 1, "map_75": 2, "map_small": 3, "map_medium": 4, "map_large": 5,
               "ar_1": 6, "ar_10": 7, "ar_100": 8}
# Points kept of each class's precision-recall curve (for plots.py; never in metrics.json).
CURVE_POINTS = 101


def pr_curve(scores: Sequence[float], truth: Sequence[bool]) -> dict[str, list[float]] | None:
    """scikit-learn's precision-recall curve of one class, at most ``CURVE_POINTS`` points; None without a positive."""
    truth = np.asarray(truth, dtype=bool).reshape(-1)
    if not truth.any():
        return None
    precision, recall, _ = sk.precision_recall_curve(truth, np.asarray(scores, dtype=np.float64).reshape(-1))
    keep = np.unique(np.linspace(0, len(precision) - 1, min(len(precision), CURVE_POINTS)).round().astype(int))
    return {"recall": recall[keep].tolist(), "precision": precision[keep].tolist()}


# Headline detection numbers, kept per epoch; the by-size ones are undefined (-1) without boxes of that size.
DETECTION_SCALARS = ("map_50_95", "map_50", "map_75", "ar_100")


def _none_if_nan(value: Any) -> float | None:
    value = float(value)
    return None if np.isnan(value) else value


def accuracy(predicted: Sequence[int], expected: Sequence[int]) -> float:
    if len(predicted) != len(expected):
        raise ValueError(f"{len(predicted)} predictions for {len(expected)} examples")
    if not len(expected):
        raise ValueError("accuracy of no examples")
    return float(sk.accuracy_score(expected, predicted))


def average_precision(scores: Sequence[float], truth: Sequence[bool]) -> float | None:
    """scikit-learn's ``average_precision_score`` of one class; None without a positive (recall undefined)."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    truth = np.asarray(truth, dtype=bool).reshape(-1)
    if len(scores) != len(truth):
        raise ValueError(f"{len(scores)} scores for {len(truth)} examples")
    if not truth.any():
        return None
    return float(sk.average_precision_score(truth, scores))


def assumed_threshold(scores: Sequence[float], truth: Sequence[bool], missed: int = 0) -> dict[str, float] | None:
    """The score threshold of highest F1 along scikit-learn's precision-recall curve, with the precision,
    recall and F1 there; the lowest such threshold when several tie. ``missed``: positives that got no score at
    all (a detector's unmatched ground truth), which lower recall at every threshold. None without a positive
    or without a threshold that finds one.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    truth = np.asarray(truth, dtype=bool).reshape(-1)
    if len(scores) != len(truth):
        raise ValueError(f"{len(scores)} scores for {len(truth)} examples")
    if not truth.any():
        return None  # no positive, or none found at any threshold
    # Missed positives ride below every real score: no real threshold admits them, so precision at real
    # thresholds is untouched and recall is counted out of all positives.
    floor = float(scores.min()) - 1.0
    scores = np.r_[scores, np.full(missed, floor)]
    truth = np.r_[truth, np.ones(missed, dtype=bool)]
    precision, recall, thresholds = sk.precision_recall_curve(truth, scores)
    precision, recall = precision[:-1], recall[:-1]  # the last point (recall 0) has no threshold
    real = thresholds > floor
    precision, recall, thresholds = precision[real], recall[real], thresholds[real]
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    best = int(np.argmax(f1))
    return {"threshold": float(thresholds[best]), "precision": float(precision[best]),
            "recall": float(recall[best]), "f1": float(f1[best])}


def classification_metrics(probabilities: np.ndarray, expected: Sequence[int], num_classes: int) -> dict[str, Any]:
    """Metrics of softmax ``probabilities`` [N, outputs] against class indices ``expected`` [N].

    ``outputs`` may be ``num_classes + 1``: the last is "none of the classes" of a classifier trained with
    negatives (a negative's index is ``num_classes``). Accuracy counts every image; per-class figures, their
    macro and weighted means, and the assumed thresholds are over the real classes (a negative is a negative
    of each). Per class, ``precision``, ``recall``, ``f1`` are at the argmax answer; a ratio with a zero
    denominator is None and left out of the macro mean.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.int64).reshape(-1)
    if probabilities.ndim != 2 or len(probabilities) != len(expected):
        raise ValueError(f"probabilities {probabilities.shape} do not fit {len(expected)} examples")
    predicted = probabilities.argmax(axis=1)
    classes = list(range(num_classes))
    outputs = list(range(probabilities.shape[1]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        precision, recall, f1, support = sk.precision_recall_fscore_support(
            expected, predicted, labels=classes, zero_division=np.nan)
        averages = {}
        for average in ("macro", "weighted"):
            p, r, f, _ = sk.precision_recall_fscore_support(expected, predicted, labels=classes, average=average,
                                                            zero_division=0.0)
            averages.update({f"precision_{average}": float(p), f"recall_{average}": float(r),
                             f"f1_{average}": float(f)})
    per_class = []
    for c in classes:
        truth = expected == c
        per_class.append({
            "precision": _none_if_nan(precision[c]), "recall": _none_if_nan(recall[c]), "f1": _none_if_nan(f1[c]),
            "support": int(support[c]),
            "average_precision": average_precision(probabilities[:, c], truth),
            "assumed_threshold": assumed_threshold(probabilities[:, c], truth),
        })
    matrix = sk.confusion_matrix(expected, predicted, labels=outputs)
    curves = [pr_curve(probabilities[:, c], expected == c) for c in classes]
    return {"accuracy": float(sk.accuracy_score(expected, predicted)), **averages,
            DETAILS: {"per_class": per_class, "confusion_matrix": matrix.tolist(), "curves": curves}}


def multilabel_metrics(scores: np.ndarray, truth: np.ndarray,
                       threshold: float = MULTILABEL_THRESHOLD) -> dict[str, Any]:
    """Metrics of sigmoid ``scores`` [N, C] against multi-hot ``truth`` [N, C] (scikit-learn).

    ``mean_average_precision``: the mean of the classes' average precision; ``f1_micro`` and ``f1_macro`` at
    ``threshold``; ``per_class`` (in column order): ``average_precision``, ``precision``, ``recall``, ``f1``
    and ``support`` at ``threshold``, and the class's ``assumed_threshold``. A ratio with a zero denominator
    is None (a class never predicted has no precision, one without a positive no recall, F1 or AP), and the
    macro means leave out classes without a positive example, as COCOeval and torchmetrics do. No positive at
    all: the means are 0.
    """
    scores = np.asarray(scores, dtype=np.float64)
    truth = np.asarray(truth, dtype=bool)
    if scores.shape != truth.shape or scores.ndim != 2:
        raise ValueError(f"scores {scores.shape} and truth {truth.shape} must both be [examples, classes]")
    predicted = scores >= threshold
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        precision, recall, f1, support = sk.precision_recall_fscore_support(truth, predicted, average=None,
                                                                            zero_division=np.nan)
        f1_micro = float(sk.f1_score(truth, predicted, average="micro", zero_division=0.0))
    per_class = []
    for c in range(scores.shape[1]):
        positive = bool(support[c])
        per_class.append({
            "average_precision": average_precision(scores[:, c], truth[:, c]),
            "precision": _none_if_nan(precision[c]),
            "recall": _none_if_nan(recall[c]) if positive else None,
            "f1": _none_if_nan(f1[c]) if positive else None,
            "support": int(support[c]),
            "assumed_threshold": assumed_threshold(scores[:, c], truth[:, c]),
        })
    measured = [entry for entry in per_class if entry["support"]]
    return {
        "mean_average_precision": float(np.mean([e["average_precision"] for e in measured])) if measured else 0.0,
        "f1_micro": f1_micro,
        "f1_macro": float(np.mean([e["f1"] or 0.0 for e in measured])) if measured else 0.0,
        DETAILS: {"per_class": per_class,
                  "curves": [pr_curve(scores[:, c], truth[:, c]) for c in range(scores.shape[1])]},
    }


@dataclass
class ImageBoxes:
    """Boxes of one image, XYXY pixels; ``labels`` are 1-based class ids; ``scores`` only for predictions."""

    boxes: np.ndarray  # [N, 4]
    labels: np.ndarray  # [N]
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))  # [N]


def _coco_entries(images: Sequence[ImageBoxes], with_scores: bool) -> list[dict[str, Any]]:
    entries = []
    for image_id, image in enumerate(images, start=1):
        boxes = np.asarray(image.boxes, dtype=float).reshape(-1, 4)
        scores = image.scores if with_scores else np.zeros(len(boxes))
        for box, label, score in zip(boxes, image.labels, scores):
            width, height = box[2] - box[0], box[3] - box[1]
            entry = {
                # COCOeval marks a matched detection with the ground truth's id, so ids must not be 0.
                "id": len(entries) + 1, "image_id": image_id, "category_id": int(label),
                "bbox": [float(box[0]), float(box[1]), float(width), float(height)],
                "area": float(width * height), "iscrowd": 0,
            }
            if with_scores:
                entry["score"] = float(score)
            entries.append(entry)
    return entries


def detection_metrics(ground_truth: Sequence[ImageBoxes], predictions: Sequence[ImageBoxes],
                      num_classes: int) -> dict[str, Any]:
    """COCOeval (bbox, 100 detections per image): ``map_50_95``, ``map_50``, ``map_75`` and ``ar_100``;
    ``details``: ``by_size`` (mAP and AR of small, medium, large boxes; None without boxes of that size) and
    ``per_class`` (``average_precision`` at IoU .5:.95 and ``average_precision_50``, ``support``, and the
    ``assumed_threshold`` at IoU 0.5 from COCOeval's own matching).

    Images without ground truth still count (their detections are false positives). Classes without ground
    truth are left out of the means by COCOeval; with no ground truth at all everything is 0.0.
    """
    if len(ground_truth) != len(predictions):
        raise ValueError(f"{len(predictions)} prediction sets for {len(ground_truth)} images")
    empty_class = {"average_precision": None, "average_precision_50": None, "support": 0, "assumed_threshold": None}
    annotations = _coco_entries(ground_truth, with_scores=False)
    if not annotations:
        return {**{name: 0.0 for name in DETECTION_SCALARS},
                DETAILS: {"by_size": {}, "per_class": [dict(empty_class) for _ in range(num_classes)]}}
    categories = [{"id": i, "name": str(i)} for i in range(1, num_classes + 1)]
    images = [{"id": i + 1} for i in range(len(ground_truth))]
    detections = _coco_entries(predictions, with_scores=True)
    # pycocotools prints progress to stdout; keep the job log to our own lines.
    with contextlib.redirect_stdout(io.StringIO()):
        truth_index = _coco({"images": images, "categories": categories, "annotations": annotations})
        # Built like COCO.loadRes does, which cannot take an empty result list.
        detection_index = _coco({"images": images, "categories": categories, "annotations": detections})
        evaluation = COCOeval(truth_index, detection_index, iouType="bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    stats = {name: float(evaluation.stats[index]) for name, index in _COCO_STATS.items()}
    result: dict[str, Any] = {name: max(0.0, stats[name]) for name in DETECTION_SCALARS}  # -1: nothing to find
    by_size = {size: {"map_50_95": _defined(stats[f"map_{size}"]),
                      "ar_100": _defined(float(evaluation.stats[{"small": 9, "medium": 10, "large": 11}[size]]))}
               for size in ("small", "medium", "large")}
    # COCOeval's own curve per class at IoU 0.5 (all areas, 100 detections): precision at 101 recall points.
    recall_points = [float(r) for r in evaluation.params.recThrs]
    curves = []
    for k in range(num_classes):
        precision = evaluation.eval["precision"][0, :, k, 0, -1]
        curves.append({"recall": recall_points, "precision": np.maximum(precision, 0.0).tolist()}
                      if (precision > -1).any() else None)
    result[DETAILS] = {"by_size": by_size, "per_class": _per_class_detection(evaluation, num_classes),
                       "curves": curves}
    return result


def detection_map(ground_truth: Sequence[ImageBoxes], predictions: Sequence[ImageBoxes],
                  num_classes: int) -> dict[str, float]:
    """Only the headline numbers of :func:`detection_metrics`."""
    result = detection_metrics(ground_truth, predictions, num_classes)
    result.pop(DETAILS)
    return result


def _defined(value: float) -> float | None:
    return None if value < 0 else value  # COCOeval's -1: no ground truth to measure against


def _per_class_detection(evaluation: COCOeval, num_classes: int) -> list[dict[str, Any]]:
    """Per class from COCOeval's accumulated precision ([IoU, recall, class, area, max dets]) and its own
    per-image matching at IoU 0.5 (all areas, 100 detections), which gives the assumed threshold."""
    precision = evaluation.eval["precision"]
    params = evaluation.params
    area_all, images = 0, len(params.imgIds)
    per_class = []
    for k in range(num_classes):
        curve = precision[:, :, k, area_all, -1]
        defined = curve[curve > -1]
        at_50 = curve[0][curve[0] > -1]
        scores: list[float] = []
        matched: list[bool] = []
        support = 0
        for i in range(images):
            entry = evaluation.evalImgs[k * len(params.areaRng) * images + area_all * images + i]
            if entry is None:
                continue
            support += int(np.sum(np.asarray(entry["gtIgnore"]) == 0))
            kept = ~np.asarray(entry["dtIgnore"][0], dtype=bool)
            scores += np.asarray(entry["dtScores"], dtype=float)[kept].tolist()
            matched += (np.asarray(entry["dtMatches"][0])[kept] > 0).tolist()
        found = int(np.sum(matched))
        per_class.append({
            "average_precision": float(defined.mean()) if defined.size else None,
            "average_precision_50": float(at_50.mean()) if at_50.size else None,
            "support": support,
            "assumed_threshold": (assumed_threshold(scores, matched, missed=support - found)
                                  if support and scores else None),
        })
    return per_class


def _coco(dataset: dict) -> COCO:
    index = COCO()
    index.dataset = dataset
    index.createIndex()
    return index
