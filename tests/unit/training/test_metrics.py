from __future__ import annotations

import numpy as np
import pytest

from sklearn import metrics as sk

from sightline_training.metrics import (DETAILS, ImageBoxes, accuracy, assumed_threshold, average_precision,
                                        classification_metrics, detection_map, detection_metrics, multilabel_metrics)


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
    assert detection_map(truth, predicted, num_classes=2) == {"map_50": 1.0, "map_50_95": 1.0, "map_75": 1.0,
                                                              "ar_100": 1.0}


def test_no_predictions_score_zero():
    truth = [boxes([0, 0, 10, 10]), boxes([5, 5, 30, 30])]
    assert detection_map(truth, [boxes(), boxes()], num_classes=1) == {"map_50": 0.0, "map_50_95": 0.0,
                                                                       "map_75": 0.0, "ar_100": 0.0}


def test_wrong_label_scores_zero():
    truth = [boxes([0, 0, 10, 10], labels=[1])]
    predicted = [boxes([0, 0, 10, 10], labels=[2], scores=[0.9])]
    assert detection_map(truth, predicted, num_classes=2) == {"map_50": 0.0, "map_50_95": 0.0, "map_75": 0.0,
                                                              "ar_100": 0.0}


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


def test_average_precision_matches_scikit_learns_documented_examples():
    # sklearn.metrics.average_precision_score's docstring: 0.83...
    assert average_precision([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(5 / 6)
    # Its multiclass example, one-vs-rest per column and macro-averaged: 0.77... (per class 5/6, 3/4, 3/4).
    truth = np.eye(3, dtype=bool)[[0, 0, 1, 1, 2, 2]]
    scores = np.array([[0.7, 0.2, 0.1], [0.4, 0.3, 0.3], [0.1, 0.8, 0.1],
                       [0.2, 0.3, 0.5], [0.4, 0.4, 0.2], [0.1, 0.2, 0.7]])
    per_class = [average_precision(scores[:, c], truth[:, c]) for c in range(3)]
    assert per_class == pytest.approx([5 / 6, 3 / 4, 3 / 4])
    assert multilabel_metrics(scores, truth)["mean_average_precision"] == pytest.approx(7 / 9)


def test_average_precision_of_ties_perfect_rankings_and_absent_classes():
    # A tie is one threshold: whatever order the two come in, precision there is 1/2 at recall 1.
    assert average_precision([0.5, 0.5], [1, 0]) == average_precision([0.5, 0.5], [0, 1]) == 0.5
    assert average_precision([0.9, 0.8, 0.1], [1, 1, 0]) == 1.0
    assert average_precision([0.9, 0.8, 0.1], [0, 0, 1]) == pytest.approx(1 / 3)
    assert average_precision([0.3, 0.2], [0, 0]) is None  # no positive: undefined, not 0
    with pytest.raises(ValueError):
        average_precision([0.1], [1, 0])


def test_multilabel_metrics_worked_by_hand():
    # Columns: a, b, c, and d which no image has. Row 3 is a negative (no class at all).
    scores = np.array([[0.9, 0.75, 0.6, 0.7],
                       [0.4, 0.7, 0.1, 0.1],
                       [0.8, 0.6, 0.3, 0.1],
                       [0.1, 0.1, 0.2, 0.1]])
    truth = np.array([[1, 0, 1, 0],
                      [0, 1, 0, 0],
                      [1, 0, 1, 0],
                      [0, 0, 0, 0]], dtype=bool)
    result = multilabel_metrics(scores, truth)
    a, b, c, d = ({key: value for key, value in entry.items() if key != "assumed_threshold"}
                  for entry in result[DETAILS]["per_class"])
    assert a == {"average_precision": 1.0, "precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2}
    # b: predicted for rows 0, 1 and 2, right only for row 1; ranked below row 0's false 0.75.
    assert b == pytest.approx({"average_precision": 0.5, "precision": 1 / 3, "recall": 1.0, "f1": 0.5,
                               "support": 1})
    # c: row 2's 0.3 is under the threshold (a miss) but still ranked above every negative.
    assert c == pytest.approx({"average_precision": 1.0, "precision": 1.0, "recall": 0.5, "f1": 2 / 3,
                               "support": 2})
    # d: one false positive; recall, F1 and AP are undefined without a positive, and d is left out of the means.
    assert d == {"average_precision": None, "precision": 0.0, "recall": None, "f1": None, "support": 0}
    assert result["mean_average_precision"] == pytest.approx((1.0 + 0.5 + 1.0) / 3)
    assert result["f1_macro"] == pytest.approx((1.0 + 0.5 + 2 / 3) / 3)
    # Over all classes: 4 true positives, 3 false positives (b twice, d once), 1 false negative (c).
    assert result["f1_micro"] == pytest.approx(2 * 4 / (2 * 4 + 3 + 1))


def test_multilabel_threshold_is_inclusive_and_no_positive_anywhere_scores_zero():
    assert multilabel_metrics(np.array([[0.5]]), np.array([[True]]))["f1_micro"] == 1.0
    assert multilabel_metrics(np.array([[0.5]]), np.array([[True]]), threshold=0.6)["f1_micro"] == 0.0
    nothing = multilabel_metrics(np.array([[0.9, 0.1]]), np.zeros((1, 2), dtype=bool))
    assert (nothing["mean_average_precision"], nothing["f1_micro"], nothing["f1_macro"]) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        multilabel_metrics(np.zeros((2, 3)), np.zeros((2, 2), dtype=bool))


def test_assumed_threshold_is_where_f1_peaks():
    # Positives at 0.9, 0.6, 0.35; negatives at 0.8, 0.3, 0.1. F1 by threshold: 0.9: 1/2, 0.8: 2/5, 0.6: 2/3,
    # 0.35: 6/7 (3 of 4 predicted are right, all found), 0.3: 3/4, 0.1: 2/3.
    scores = [0.9, 0.8, 0.6, 0.35, 0.3, 0.1]
    truth = [1, 0, 1, 1, 0, 0]
    found = assumed_threshold(scores, truth)
    assert found == pytest.approx({"threshold": 0.35, "precision": 0.75, "recall": 1.0, "f1": 6 / 7})
    # Perfectly separated: every threshold from the lowest positive up to the highest negative ties at F1 1 on
    # this data; the lowest is taken.
    assert assumed_threshold([0.9, 0.7, 0.4, 0.2], [1, 1, 0, 0])["threshold"] == pytest.approx(0.7)
    # Two positives never scored: recall is out of 5 wherever the threshold is.
    missed = assumed_threshold(scores, truth, missed=2)
    assert missed["recall"] <= 3 / 5 + 1e-9
    assert assumed_threshold([0.2, 0.1], [0, 0]) is None


def test_classification_metrics_match_scikit_learn_and_count_negatives():
    # 3 classes and a background output (index 3); the last example is a negative.
    probabilities = np.array([[0.7, 0.1, 0.1, 0.1],
                              [0.2, 0.6, 0.1, 0.1],
                              [0.5, 0.3, 0.1, 0.1],
                              [0.1, 0.1, 0.7, 0.1],
                              [0.1, 0.1, 0.2, 0.6],
                              [0.3, 0.1, 0.1, 0.5]])
    expected = np.array([0, 1, 1, 2, 2, 3])
    result = classification_metrics(probabilities, expected, num_classes=3)
    predicted = probabilities.argmax(axis=1)
    assert result["accuracy"] == pytest.approx(4 / 6)
    assert result["f1_macro"] == pytest.approx(sk.f1_score(expected, predicted, labels=[0, 1, 2], average="macro"))
    assert result["recall_weighted"] == pytest.approx(
        sk.recall_score(expected, predicted, labels=[0, 1, 2], average="weighted"))
    details = result[DETAILS]
    assert details["confusion_matrix"] == sk.confusion_matrix(expected, predicted, labels=[0, 1, 2, 3]).tolist()
    zero, one, two = details["per_class"]
    assert (zero["precision"], zero["recall"], zero["support"]) == (pytest.approx(0.5), 1.0, 1)
    assert (one["recall"], two["recall"]) == (pytest.approx(0.5), pytest.approx(0.5))
    # Class 2's one-vs-rest scores 0.1 0.1 0.1 0.7 0.2 0.1: F1 peaks at 1 at 0.2, where both positives pass.
    assert two["assumed_threshold"] == pytest.approx({"threshold": 0.2, "precision": 1.0, "recall": 1.0, "f1": 1.0})
    for value in (result["precision_macro"], result["f1_weighted"]):
        assert isinstance(value, float)


def test_detection_metrics_by_class_size_and_threshold():
    # Class 1: two boxes found at 0.9 and 0.6, a false positive at 0.7 and one at 0.2; class 2: a 10 px box
    # (small) found at 0.8, a 200 px box (large) missed.
    truth = [boxes([0, 0, 10, 10], [50, 50, 250, 250], labels=[1, 2]),
             boxes([0, 0, 20, 20], [30, 30, 40, 40], labels=[1, 2])]
    predicted = [boxes([0, 0, 10, 10], [100, 100, 120, 120], labels=[1, 1], scores=[0.9, 0.7]),
                 boxes([0, 0, 20, 20], [60, 60, 70, 70], [30, 30, 40, 40], labels=[1, 1, 2],
                       scores=[0.6, 0.2, 0.8])]
    result = detection_metrics(truth, predicted, num_classes=2)
    first, second = result[DETAILS]["per_class"]
    assert first["support"] == 2 and second["support"] == 2
    # Class 1 at IoU 0.5: thresholds 0.9 (P 1, R 1/2), 0.7 (1/2, 1/2), 0.6 (2/3, 1): F1 peaks at 0.6 with 0.8.
    assert first["assumed_threshold"] == pytest.approx({"threshold": 0.6, "precision": 2 / 3, "recall": 1.0,
                                                        "f1": 0.8})
    assert second["assumed_threshold"] == pytest.approx({"threshold": 0.8, "precision": 1.0, "recall": 0.5,
                                                         "f1": 2 / 3})
    assert first["average_precision_50"] == pytest.approx(result[DETAILS]["per_class"][0]["average_precision"])
    by_size = result[DETAILS]["by_size"]
    assert by_size["large"]["map_50_95"] == 0.0  # class 2's big box was never found
    assert by_size["medium"] == {"map_50_95": None, "ar_100": None}  # no box of 32 to 96 pixels
    assert 0.0 < result["map_50"] < 1.0 and result["map_75"] == pytest.approx(result["map_50"])
