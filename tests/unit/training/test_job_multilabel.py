"""Multi-label models and classifiers trained with negatives, end to end: manifest, training, ONNX export, and
the predict function's Predictor on the exported files. Solid colours (conftest.colour_dataset) train from
scratch in a few seconds, so the tests can check what the served model answers, not only that it runs."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from sightline import imaging
from sightline.inference import Predictor
from sightline_training import export
from sightline_training.config import JobConfig
from sightline_training.errors import InvalidInput
from sightline_training.train import plan_job
from training_helpers import PRIMARIES, colour_image, run

# Enough steps for the colours to separate (observed: every validation image right after 7 to 10 epochs).
COLOUR_PARAMS = {"epochs": 10, "image_size": 32, "batch_size": 16, "learning_rate": 0.005, "augment": 0.0}
CLASSES = sorted(PRIMARIES)


def exported(tmp_path: Path) -> tuple[dict, dict, Predictor]:
    out = tmp_path / "job" / "out"
    labels = json.loads((out / "labels.json").read_text())
    return labels, json.loads((out / "metrics.json").read_text()), Predictor(out / "model.onnx", labels)


def test_a_multilabel_model_answers_every_class_present_and_none_for_a_negative(colour_manifest, tmp_path):
    assert run(colour_manifest("multilabel"), tmp_path, "mobilenet_v3_small_multilabel", COLOUR_PARAMS) == 0
    labels, metrics, predictor = exported(tmp_path)
    thresholds = labels.pop("thresholds")
    assert set(thresholds) == set(CLASSES) and all(0.0 <= t <= 1.0 for t in thresholds.values())
    assert labels == {
        "format": "sightline.labels/v1", "task": "multilabel", "template": "mobilenet_v3_small_multilabel",
        "classes": CLASSES,
        "input": {"name": "images", "width": 32, "height": 32, "batch": True, "scale": 255.0,
                  "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
        "outputs": {"logits": "logits"},
        "precision": "fp32",
    }
    assert set(metrics) == {"task", "primary_metric", "mean_average_precision", "f1_micro", "f1_macro", "threshold",
                            "per_class", "assumed_thresholds", "validation_images", "epochs", "device", "history",
                            "onnx_check", "weights", "best_epoch", "stopped_early", "recipe", "compute"}
    assert metrics["primary_metric"] == "mean_average_precision" and metrics["threshold"] == 0.5
    assert metrics["validation_images"] == 8  # every combination once, the empty one included
    assert list(metrics["per_class"]) == CLASSES
    for entry in metrics["per_class"].values():
        assert set(entry) == {"average_precision", "precision", "recall", "f1", "support", "assumed_threshold"}
        assert entry["support"] == 4  # each class is in half of the 8 combinations
    assert {"mean_average_precision", "f1_micro", "f1_macro"} <= set(metrics["history"][-1])
    assert "per_class" not in metrics["history"][-1]
    assert metrics["mean_average_precision"] >= 0.9 and metrics["f1_micro"] >= 0.9
    assert metrics["onnx_check"]["passed"] is True
    assert metrics["onnx_check"]["max_rel_diff"] <= export.LOGITS_RELATIVE_TOLERANCE

    rng = random.Random(7)  # images the model never saw
    for present in [("green", "red"), ("blue", "red"), ("blue", "green", "red"), ("blue",), ()]:
        predictions = predictor.predict(colour_image(present, rng), threshold=0.5, max_results=100)
        assert sorted(p["label"] for p in predictions) == list(present), predictions
        scores = [p["score"] for p in predictions]
        assert scores == sorted(scores, reverse=True) and all(0.5 <= s <= 1.0 for s in scores)
    everything = predictor.predict(colour_image(CLASSES, rng), threshold=0.0, max_results=100)
    assert sum(p["score"] for p in everything) > 1.5  # independent sigmoids, not a softmax


def test_classification_with_negatives_learns_none_and_never_reports_the_background(colour_manifest, tmp_path):
    # 4 colours (3 classes and a negative) x 8: as many training steps as the 8 multilabel combinations x 5.
    manifest = colour_manifest("classification", repeats=8)
    assert run(manifest, tmp_path, "mobilenet_v3_small", COLOUR_PARAMS) == 0
    labels, metrics, predictor = exported(tmp_path)
    assert labels["classes"] == CLASSES and labels["background"] is True
    assert labels["outputs"] == {"logits": "logits"}
    assert metrics["primary_metric"] == "accuracy" and metrics["validation_negatives"] == 1
    assert metrics["accuracy"] == 1.0  # the negative counts, and is right only when the model answers "none"
    assert metrics["onnx_check"]["passed"] is True

    # The graph has the background as its last logit; labels.json names only the classes.
    image = colour_image((), random.Random(3))
    (logits,) = predictor._session.run(["logits"], {"images": imaging.to_tensor(image, predictor.input_spec)})
    assert logits.shape == (1, len(CLASSES) + 1) and int(np.argmax(logits)) == len(CLASSES)
    assert predictor.predict(image, threshold=0.5, max_results=5) == []
    ranked = predictor.predict(image, threshold=0.0, max_results=5)
    assert sorted(p["label"] for p in ranked) == CLASSES  # every class, low, and no background among them
    assert sum(p["score"] for p in ranked) < 0.5  # the rest went to "none"

    rng = random.Random(5)
    for name in CLASSES:
        (best, *_rest) = predictor.predict(colour_image((name,), rng), threshold=0.0, max_results=5)
        assert best["label"] == name and best["score"] >= 0.5


def _plan(manifest: Path, tmp_path: Path):
    return plan_job(JobConfig(manifest_uri=str(manifest), output_uri=str(tmp_path / "out"), checkpoint_uri=None,
                              template_id=None, params={}, work_dir=tmp_path / "work"))


def test_one_class_and_negatives_is_enough_for_a_classifier(colour_manifest, tmp_path):
    def keep_red_and_negatives(document: dict) -> None:
        document["classes"] = ["red"]
        document["items"] = [i for i in document["items"] if i["label"] in ("red", None)]

    plan = _plan(colour_manifest("classification", edit=keep_red_and_negatives), tmp_path)
    assert plan.background and plan.outputs == 2 and plan.args["background"] is True
    assert plan.template.id == "mobilenet_v3_small"


def test_a_multilabel_manifest_trains_the_multilabel_template_by_default(colour_manifest, tmp_path):
    plan = _plan(colour_manifest("multilabel", repeats=2), tmp_path)
    assert plan.template.id == "mobilenet_v3_small_multilabel" and plan.outputs == 3 and not plan.background
    assert "background" not in plan.args  # so checkpoints from before negatives still resume


def test_multilabel_validation_without_any_label_cannot_be_measured(colour_manifest, tmp_path):
    def no_validation_labels(document: dict) -> None:
        for item in document["items"]:
            if item["split"] == "validation":
                item["labels"] = []

    with pytest.raises(InvalidInput, match="validation items have no labels"):
        _plan(colour_manifest("multilabel", repeats=2, edit=no_validation_labels), tmp_path)
