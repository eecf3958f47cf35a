"""plots.py: every PNG opens, has the size its figure asks for, and shows something (not one flat colour)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sightline_training import plots


def opened(path) -> Image.Image:
    image = Image.open(path)
    image.load()
    assert image.format == "PNG"
    return image.convert("RGB")


def assert_drawn(image: Image.Image) -> None:
    pixels = np.asarray(image, dtype=np.float64)
    assert pixels.std() > 5.0  # a blank figure is one colour
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20


def test_precision_recall_curves(tmp_path):
    curves = [{"recall": [1.0, 0.5, 0.0], "precision": [0.6, 1.0, 1.0]}, None,
              {"recall": [1.0, 0.0], "precision": [1.0, 1.0]}]
    image = opened(plots.pr_curves(curves, ["cat", "dog", "fox"], tmp_path / plots.PR_CURVES))
    assert image.size == (7 * plots.DPI, 6 * plots.DPI)
    assert_drawn(image)
    assert plots.pr_curves([None], ["cat"], tmp_path / "none.png") is None  # no class had a positive


def test_confusion_matrix(tmp_path):
    image = opened(plots.confusion_matrix([[5, 1, 0], [2, 3, 0], [0, 1, 4]], ["cat", "dog", "(none)"],
                                          tmp_path / plots.CONFUSION_MATRIX))
    assert image.size == (4 * plots.DPI, 4 * plots.DPI)  # the smallest matrix figure
    assert_drawn(image)
    many = [[0] * (plots.MAX_CLASSES + 1)] * (plots.MAX_CLASSES + 1)
    assert plots.confusion_matrix(many, [str(i) for i in range(plots.MAX_CLASSES + 1)], tmp_path / "x.png") is None


def test_training_curves(tmp_path):
    history = [{"epoch": e, "train_loss": 2.0 / e, "accuracy": 0.5 + e / 20} for e in range(1, 6)]
    image = opened(plots.training_curves(history, "accuracy", tmp_path / plots.TRAINING_CURVES))
    assert image.size == (7 * plots.DPI, int(4.5 * plots.DPI))
    assert_drawn(image)


@pytest.mark.parametrize("detector", [True, False])
def test_validation_sheet_draws_truth_and_answers(tmp_path, detector):
    rng = np.random.default_rng(0)
    samples = []
    for i in range(5):
        image = Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
        if detector:
            box = {"x_min": 5.0, "y_min": 5.0, "x_max": 40.0, "y_max": 30.0}
            samples.append({"image": image, "truth": [{"label": "car", "box": box}],
                            "predicted": [{"label": "car", "score": 0.9, "box": box}] if i % 2 else []})
        else:
            samples.append({"image": image, "truth": ["cat"], "predicted": [{"label": "cat", "score": 0.8}]})
    image = opened(plots.validation_sheet(samples, tmp_path / plots.VALIDATION_SHEET, boxes=detector))
    assert image.size == (int(4 * 3.2 * plots.DPI), int(2 * 3.4 * plots.DPI))  # 4 columns, 2 rows
    assert_drawn(image)
    assert plots.validation_sheet([], tmp_path / "empty.png", boxes=detector) is None
