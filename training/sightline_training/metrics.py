"""Validation metrics: classification accuracy, and detection mAP computed by pycocotools' COCOeval."""
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


def _coco(dataset: dict) -> COCO:
    index = COCO()
    index.dataset = dataset
    index.createIndex()
    return index
