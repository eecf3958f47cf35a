"""End-to-end training jobs on tiny synthetic data, through the same entrypoint Batch runs."""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from PIL import Image

from sightline import imaging
from sightline.templates import get_template
from sightline_training import engine, export, models, storage
from sightline_training.__main__ import main
from sightline.contract import CHECKPOINT_FILE
from training_helpers import run

CLASSIFIER_PARAMS = {"epochs": 1, "image_size": 64, "batch_size": 4}
DETECTOR_PARAMS = {"epochs": 1, "image_size": 32, "batch_size": 4}  # the smallest image_size the catalogue allows


def load_trained(tmp_path: Path, name: str, template_id: str, classes: int, image_size: int) -> torch.nn.Module:
    state = torch.load(tmp_path / name / "checkpoints" / CHECKPOINT_FILE, weights_only=True)
    model = models.build_model(get_template(template_id), classes, image_size)
    model.load_state_dict(state["model"])
    return model.eval()


def first_validation_image(manifest: Path) -> Image.Image:
    """The first validation image (with boxes, for detection) of a manifest written by ``local_manifest``."""
    document = json.loads(manifest.read_text())
    item = next(i for i in document["items"] if i["split"] == "validation" and i.get("boxes", True))
    uri = item["image"]["uri"]
    path = storage.local_path(uri) if uri.startswith("file://") else manifest.parent / uri
    return Image.open(path).convert("RGB")


def test_classifier_trains_exports_and_matches_onnx(local_manifest, tmp_path):
    manifest = local_manifest("classification")
    assert run(manifest, tmp_path, "mobilenet_v3_small", CLASSIFIER_PARAMS) == 0

    out = tmp_path / "job" / "out"
    assert sorted(p.name for p in out.iterdir()) == ["card.json", "confusion_matrix.png", "labels.json",
                                                     "metrics.json", "model.onnx", "pr_curves.png", "progress.json",
                                                     "training_curves.png", "validation_samples.png"]
    progress = json.loads((out / "progress.json").read_text())
    assert (progress["format"], progress["epoch"], progress["epochs"], progress["eta_seconds"]) == (
        "sightline.progress/v1", 1, 1, 0.0)
    assert progress["metric"]["name"] == "accuracy" and progress["images_per_second"] > 0
    assert [entry["epoch"] for entry in progress["history"]] == [1]
    labels = json.loads((out / "labels.json").read_text())
    # Each class validated with a positive has its assumed threshold: a softmax score.
    thresholds = labels.pop("thresholds", {})
    assert set(thresholds) <= {"circle", "square"} and all(0.0 <= t <= 1.0 for t in thresholds.values())
    assert labels == {
        "format": "sightline.labels/v1", "task": "classification", "template": "mobilenet_v3_small",
        "classes": ["circle", "square"],
        "input": {"name": "images", "width": 64, "height": 64, "batch": True, "scale": 255.0,
                  "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
        "outputs": {"logits": "logits"},
        "precision": "fp32",
    }
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"task", "primary_metric", "accuracy", "precision_macro", "recall_macro", "f1_macro",
                            "precision_weighted", "recall_weighted", "f1_weighted", "per_class",
                            "assumed_thresholds", "confusion_matrix", "validation_images", "epochs", "device",
                            "history", "onnx_check", "weights", "best_epoch", "stopped_early", "recipe",
                            "compute"}
    assert list(metrics["per_class"]) == ["circle", "square"]
    assert sum(entry["support"] for entry in metrics["per_class"].values()) == 4
    assert {name: t for name, t in metrics["assumed_thresholds"].items() if t is not None} == thresholds
    assert metrics["confusion_matrix"]["labels"] == ["circle", "square"]
    assert sum(map(sum, metrics["confusion_matrix"]["matrix"])) == 4
    # The history holds numbers only; the per-class figures are the best epoch's.
    assert all(isinstance(value, (int, float)) for value in metrics["history"][0].values())
    assert metrics["best_epoch"] == 1 and metrics["stopped_early"] is False
    assert metrics["recipe"] == {"chosen": {}}  # every param was given or has a plain default
    # No published weights here (conftest: an empty TORCH_HOME, downloads off): from scratch, and said so.
    assert metrics["weights"]["source"] == "none" and "downloads are off" in metrics["weights"]["reason"]
    assert metrics["task"] == "classification" and metrics["primary_metric"] == "accuracy"
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert metrics["validation_images"] == 4 and metrics["epochs"] == 1 and metrics["device"] == "cpu"
    assert [h["epoch"] for h in metrics["history"]] == [1]
    assert {"epoch", "train_loss", "accuracy"} <= set(metrics["history"][0])
    assert metrics["onnx_check"]["passed"] is True and metrics["onnx_check"]["images"] == 4
    assert metrics["onnx_check"]["max_rel_diff"] <= export.LOGITS_RELATIVE_TOLERANCE
    card = json.loads((out / "card.json").read_text())
    assert card["format"] == "sightline.card/v1" and card["template"] == "mobilenet_v3_small"
    assert card["task"] == "classification" and card["dataset"]["validation_images"] == 4
    assert len(card["dataset"]["snapshot"]) == 64
    assert [entry["name"] for entry in card["classes"]] == ["circle", "square"]
    assert sum(entry["validation_images"] for entry in card["classes"]) == 4
    assert card["input"] == labels["input"] and card["assumed_thresholds"] == thresholds
    assert card["primary_metric"] == {"name": "accuracy", "accuracy": metrics["accuracy"]}
    assert card["onnx_check"] == metrics["onnx_check"] and card["training"]["epochs"] == 1
    assert card["training"]["seconds"] > 0 and card["hardware"]["device"] == "cpu"
    assert sorted(card["plots"]) == ["confusion_matrix.png", "pr_curves.png", "training_curves.png",
                                     "validation_samples.png"]
    with Image.open(out / "validation_samples.png") as sheet:  # 4 validation images: one row of 4
        assert sheet.size == (1280, 340)
    assert {"python", "torch", "onnxruntime", "scikit-learn"} <= set(card["software"])

    # The published graph is the checkpointed model, fed as labels.json says, batch of one.
    model = load_trained(tmp_path, "job", "mobilenet_v3_small", 2, 64)
    image_input = imaging.to_tensor(first_validation_image(manifest), imaging.InputSpec.from_labels(labels))
    session = onnxruntime.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    (logits,) = session.run(["logits"], {"images": image_input})
    with torch.inference_mode():
        expected = model(torch.from_numpy(image_input)).numpy()
    assert logits.shape == (1, 2)
    np.testing.assert_allclose(logits, expected, atol=1e-3)


def test_detector_trains_exports_and_matches_onnx(local_manifest, tmp_path):
    manifest = local_manifest("detection", count=12, size=96, file_uris=True)
    assert run(manifest.as_uri(), tmp_path, "ssdlite320_mobilenet_v3_large", DETECTOR_PARAMS) == 0

    out = tmp_path / "job" / "out"
    labels = json.loads((out / "labels.json").read_text())
    thresholds = labels.pop("thresholds", {})
    assert set(thresholds) <= {"circle", "square"} and all(0.0 <= t <= 1.0 for t in thresholds.values())
    assert labels == {
        "format": "sightline.labels/v1", "task": "detection", "template": "ssdlite320_mobilenet_v3_large",
        "classes": ["circle", "square"],
        "input": {"name": "images", "width": 32, "height": 32, "batch": False, "scale": 255.0,
                  "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]},
        "outputs": {"boxes": "boxes", "scores": "scores", "labels": "labels"},
        "precision": "fp32",
    }
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"task", "primary_metric", "map_50", "map_50_95", "map_75", "ar_100", "per_class",
                            "assumed_thresholds", "by_size", "validation_images", "epochs", "device", "history",
                            "onnx_check", "weights", "best_epoch", "stopped_early", "recipe", "compute"}
    assert list(metrics["per_class"]) == ["circle", "square"]
    assert set(metrics["by_size"]) == {"small", "medium", "large"}
    # No confusion matrix for a detector; its sheet draws boxes on the 4 validation images.
    assert {"pr_curves.png", "training_curves.png", "validation_samples.png"} <= {p.name for p in out.iterdir()}
    assert not (out / "confusion_matrix.png").exists()
    assert all(isinstance(value, (int, float)) for value in metrics["history"][-1].values())
    # Shapes of a quarter to half the image: SSDlite's own smallest anchor (0.2 of the side) already fits them.
    assert metrics["recipe"]["box_sides"]["boxes"] == 9 and metrics["recipe"]["box_sides"]["p05"] > 0.2
    assert metrics["recipe"]["chosen"] == {"anchor_min": 0.2}
    assert metrics["primary_metric"] == "map_50_95"
    assert 0.0 <= metrics["map_50_95"] <= metrics["map_50"] <= 1.0
    assert metrics["onnx_check"] == {"images": 5, "max_abs_diff": metrics["onnx_check"]["max_abs_diff"],
                                     "passed": True}  # 4 validation images and a blank one

    session = onnxruntime.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    image_input = imaging.to_tensor(first_validation_image(manifest), imaging.InputSpec.from_labels(labels))
    boxes, scores, label_ids = session.run(["boxes", "scores", "labels"], {"images": image_input})
    assert image_input.shape == (3, 32, 32)
    assert boxes.shape == (len(scores), 4) and label_ids.dtype == np.int64
    assert set(label_ids.tolist()) <= {1, 2}
    assert (boxes >= 0).all() and (boxes <= 32).all()  # the input's pixels

    # The graph's edge cases: no detection at all, and exactly one.
    model = load_trained(tmp_path, "job", "ssdlite320_mobilenet_v3_large", 2, 32)
    tensor = torch.from_numpy(image_input)
    with torch.inference_mode():
        top_scores = np.sort(model([tensor])[0]["scores"].numpy())[::-1]
    assert top_scores[0] - top_scores[1] > export.DETECTION_TOLERANCE  # no tie at the top
    for score_threshold, max_detections, expected_count in ((1.0, 300, 0), (0.001, 1, 1)):
        model.score_thresh, model.detections_per_img = score_threshold, max_detections
        path = tmp_path / f"edge{expected_count}.onnx"
        export.export_onnx(model, get_template("ssdlite320_mobilenet_v3_large"), 32, path)
        edge_session = export.open_session(path)
        assert edge_session.run(["scores"], {"images": image_input})[0].shape == (expected_count,)
        check = export.verify_detector(edge_session, model, [tensor], [image_input])
        assert check.passed, check.reason


def test_sigterm_saves_the_epoch_and_a_retry_resumes_at_the_next(local_manifest, tmp_path, monkeypatch, capsys):
    manifest = local_manifest("classification")
    params = {**CLASSIFIER_PARAMS, "epochs": 2}
    real_train_one_epoch = engine.train_one_epoch
    epochs_trained: list[int] = []

    def interrupted_in_second_epoch(*args, **kwargs):
        epoch = args[4]
        if epoch == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # what Batch sends on Spot reclaim
        epochs_trained.append(epoch)
        return real_train_one_epoch(*args, **kwargs)

    monkeypatch.setattr(engine, "train_one_epoch", interrupted_in_second_epoch)
    handler_before = signal.getsignal(signal.SIGTERM)
    assert run(manifest, tmp_path, "mobilenet_v3_small", params) == 143
    assert signal.getsignal(signal.SIGTERM) == handler_before  # the job put the handler back
    assert "SIGTERM" in capsys.readouterr().err
    saved = torch.load(tmp_path / "job" / "checkpoints" / CHECKPOINT_FILE, weights_only=True)
    assert saved["epoch"] == 0 and set(saved) >= {"args", "model", "optimizer", "lr_scheduler", "scaler", "epoch",
                                                  "best"}
    # Only the first epoch's progress report is out; no model, no metrics.
    assert sorted(p.name for p in (tmp_path / "job" / "out").iterdir()) == ["progress.json"]

    def recording(*args, **kwargs):
        epochs_trained.append(args[4])
        return real_train_one_epoch(*args, **kwargs)

    epochs_trained.clear()
    monkeypatch.setattr(engine, "train_one_epoch", recording)
    assert run(manifest, tmp_path, "mobilenet_v3_small", params) == 0
    assert epochs_trained == [1]  # epoch 0 came from the checkpoint
    resumed = json.loads((tmp_path / "job" / "out" / "metrics.json").read_text())
    assert [h["epoch"] for h in resumed["history"]] == [1, 2] and resumed["epochs"] == 2

    # Seeds are per epoch, so the resumed job equals one that was never interrupted.
    monkeypatch.setattr(engine, "train_one_epoch", real_train_one_epoch)
    assert run(manifest, tmp_path, "mobilenet_v3_small", params, name="unbroken") == 0
    unbroken = json.loads((tmp_path / "unbroken" / "out" / "metrics.json").read_text())
    for got, want in zip(resumed["history"], unbroken["history"]):
        assert got["train_loss"] == pytest.approx(want["train_loss"], rel=1e-6)
        assert got["accuracy"] == want["accuracy"]


def test_a_finished_checkpoint_only_exports(local_manifest, tmp_path, monkeypatch):
    manifest = local_manifest("classification")
    assert run(manifest, tmp_path, "mobilenet_v3_small", CLASSIFIER_PARAMS) == 0
    monkeypatch.setattr(engine, "train_one_epoch", lambda *a, **k: pytest.fail("trained again"))
    (tmp_path / "job" / "out" / "metrics.json").unlink()
    assert run(manifest, tmp_path, "mobilenet_v3_small", CLASSIFIER_PARAMS) == 0
    assert (tmp_path / "job" / "out" / "metrics.json").is_file()


def test_a_checkpoint_of_another_job_is_refused(local_manifest, tmp_path, capsys):
    manifest = local_manifest("classification")
    assert run(manifest, tmp_path, "mobilenet_v3_small", CLASSIFIER_PARAMS) == 0
    capsys.readouterr()
    assert run(manifest, tmp_path, "mobilenet_v3_small", {**CLASSIFIER_PARAMS, "learning_rate": 0.01}) == 2
    assert "belongs to a different job (params differ)" in capsys.readouterr().err


def drop_class(document: dict) -> None:
    document["classes"] = ["circle"]
    document["items"] = [i for i in document["items"] if i["label"] == "circle"]


def only_validation(document: dict) -> None:
    for item in document["items"]:
        item["split"] = "validation"


@pytest.mark.parametrize(
    ("edit", "template", "params", "message"),
    [
        (None, "ssdlite320_mobilenet_v3_large", {}, "template ssdlite320_mobilenet_v3_large trains detection models, "
                                                    "not classification"),
        (None, "resnet9000", {}, "unknown template 'resnet9000'"),
        (drop_class, "mobilenet_v3_small", {}, "classification needs at least 2 classes"),
        (only_validation, "mobilenet_v3_small", {}, "the manifest has no training items"),
        (None, "mobilenet_v3_small", {"epochs": 0}, "params.epochs must be between 1 and 500"),
        (None, "mobilenet_v3_small", {"momentum": 0.9}, "unknown params for template mobilenet_v3_small: momentum"),
        (None, "mobilenet_v3_small", {"batch_size": 1}, "params.batch_size must be between 2 and 512"),
        (lambda d: d.update(format="coco"), "mobilenet_v3_small", {}, "manifest format must be"),
    ],
)
def test_bad_input_fails_early_with_one_line(local_manifest, tmp_path, capsys, edit, template, params, message):
    manifest = local_manifest("classification", count=4, edit=edit)
    assert run(manifest, tmp_path, template, params) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "job" / "out").exists()


def test_every_log_line_carries_the_runs_correlation_id(tmp_path):
    """The workflow's correlation id (SIGHTLINE_CORRELATION_ID) tags the job's log lines, '%' and all."""
    import subprocess
    import sys

    environ = {**os.environ, "SIGHTLINE_CORRELATION_ID": "m1-v3 100%"}
    done = subprocess.run([sys.executable, "-m", "sightline_training", "--manifest", str(tmp_path / "nope.json"),
                           "--output", str(tmp_path / "out")], env=environ, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2
    lines = done.stdout.splitlines()
    assert lines and all("[m1-v3 100%] " in line for line in lines), done.stdout


def test_missing_manifest_and_environment(tmp_path, capsys):
    assert main(["--manifest", str(tmp_path / "nope.json"), "--output", str(tmp_path / "out")], environ={}) == 2
    assert capsys.readouterr().err == f"manifest not found: {tmp_path / 'nope.json'}\n"
    assert main([], environ={}) == 2
    assert capsys.readouterr().err == "SIGHTLINE_MANIFEST_URI is not set (or pass --manifest)\n"
    assert main([], environ={"SIGHTLINE_MANIFEST_URI": "m", "SIGHTLINE_OUTPUT_URI": "o",
                             "SIGHTLINE_PARAMS": "{epochs: 3}"}) == 2
    assert capsys.readouterr().err.startswith("SIGHTLINE_PARAMS is not valid JSON")
