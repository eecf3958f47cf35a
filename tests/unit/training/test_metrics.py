from __future__ import annotations

import numpy as np
import pytest

from sightline_training.metrics import ImageBoxes, accuracy, detection_map


def boxes(*rows, labels=None, scores=None) -> ImageBoxes:
    array = np.array(rows, dtype=float).reshape(-1, 4)
    labels = np.array(labels if labels is not None else [1] * len(array), dtype=np.int64)
    scores = np.array(scores if scores is not None else [], dtype=float)
    return ImageBoxes(array, labels, scores)


def test_accuracy_counts_exact_matches():
    assert accuracy([0, 1, 1, 0], [0, 1, 0, 0]) == 0.75
    assert accuracy([2], [2]) == 1.0
    with pytest.raises(ValueError):
        accuracy([], [])
    with pytest.raises(ValueError):
        accuracy([1], [1, 2])


def test_perfect_detections_score_one():
    truth = [boxes([0, 0, 10, 10], [20, 20, 40, 50], labels=[1, 2]), boxes([5, 5, 30, 30], labels=[2])]
    predicted = [boxes([0, 0, 10, 10], [20, 20, 40, 50], labels=[1, 2], scores=[0.9, 0.8]),
                 boxes([5, 5, 30, 30], labels=[2], scores=[0.7])]
    assert detection_map(truth, predicted, num_classes=2) == {"map_50": 1.0, "map_50_95": 1.0}


def test_no_predictions_score_zero():
    truth = [boxes([0, 0, 10, 10]), boxes([5, 5, 30, 30])]
    assert detection_map(truth, [boxes(), boxes()], num_classes=1) == {"map_50": 0.0, "map_50_95": 0.0}


def test_wrong_label_scores_zero():
    truth = [boxes([0, 0, 10, 10], labels=[1])]
    predicted = [boxes([0, 0, 10, 10], labels=[2], scores=[0.9])]
    assert detection_map(truth, predicted, num_classes=2) == {"map_50": 0.0, "map_50_95": 0.0}


def test_loose_box_counts_only_at_low_iou_thresholds():
    # IoU 0.63: a hit at 0.50, 0.55 and 0.60, a miss at the 7 thresholds above.
    truth = [boxes([0, 0, 10, 10])]
    predicted = [boxes([0, 0, 10, 6.3], scores=[0.9])]
    result = detection_map(truth, predicted, num_classes=1)
    assert result["map_50"] == pytest.approx(1.0)
    assert result["map_50_95"] == pytest.approx(0.3)


def test_false_positive_on_an_image_without_ground_truth_counts():
    # The negative image's confident false positive ranks first: precision 1/2 at full recall.
    truth = [boxes([0, 0, 10, 10]), boxes()]
    predicted = [boxes([0, 0, 10, 10], scores=[0.5]), boxes([3, 3, 9, 9], scores=[0.9])]
    assert detection_map(truth, predicted, num_classes=1)["map_50"] == pytest.approx(0.5)


def test_no_ground_truth_anywhere_scores_zero():
    assert detection_map([boxes()], [boxes([0, 0, 5, 5], scores=[0.9])], num_classes=1)["map_50"] == 0.0
