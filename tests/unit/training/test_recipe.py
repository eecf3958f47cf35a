"""The small-data recipe: values chosen from the data, warmup plus cosine, weight decay groups, early stopping
with the best epoch's weights exported, anchors for small objects."""
from __future__ import annotations

import json
import math

import numpy as np
import onnxruntime
import pytest
import torch
from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_fpn

from sightline import imaging
from sightline.templates import get_template
from sightline_training import engine, models, recipe
from sightline_training.manifest import Box, ManifestItem
from test_job import CLASSIFIER_PARAMS, first_validation_image
from training_helpers import run

SSDLITE = get_template("ssdlite320_mobilenet_v3_large")


def boxes_item(item_id: str, sides: list[float]) -> ManifestItem:
    return ManifestItem(item_id, f"images/{item_id}.png", "train", None,
                        tuple(Box(1, 0.0, 0.0, side, side) for side in sides))


def test_batch_size_gives_a_small_split_at_least_8_steps():
    assert recipe.default_batch_size(16, 34) == 4 and recipe.default_batch_size(16, 100) == 12
    assert recipe.default_batch_size(16, 5000) == 16 and recipe.default_batch_size(32, 10) == 4


def test_epochs_follow_the_dataset_size():
    assert recipe.default_epochs(30, 30) == 100  # few images: the most epochs
    assert recipe.default_epochs(30, 600) == 50  # 30 x 1,000 / 600
    assert recipe.default_epochs(30, 1000) == 30 and recipe.default_epochs(30, 50_000) == 30
    assert recipe.default_epochs(15, 500) == 30


def test_small_boxes_choose_a_larger_image_and_smaller_anchors():
    # 20 images of 1,000 x 1,000 pixels with boxes of 20 to 60 pixels: 2 to 6% of the side.
    items = [boxes_item(f"i{n}", [20.0 + 2 * n, 40.0, 60.0]) for n in range(20)]
    sizes = {item.id: (1000, 1000) for item in items}
    params, choices = recipe.complete_params(SSDLITE, SSDLITE.resolve_params({}), items, sizes)
    # 90% of the boxes at least 16 pixels: the 10th percentile is 0.0318, 16 / 0.0318 = 503 -> 512 (within
    # SSDlite's 320..640).
    # 20 images: the most epochs, and batches of 4 (at least 8 steps an epoch would need 2).
    assert params["epochs"] == 100 and params["image_size"] == 512 and params["batch_size"] == 4
    assert choices.chosen == {"epochs": 100, "batch_size": 4, "image_size": 512}
    assert choices.box_sides["boxes"] == 60 and choices.box_sides["p05"] == pytest.approx(0.0259)

    model = models.build_model(SSDLITE, 1, params["image_size"])
    assert models.smallest_anchor(model, 512) == pytest.approx(0.2)
    chosen = recipe.fit_anchors(model, params, items, sizes, 512, choices)
    assert chosen == choices.chosen["anchor_min"] == pytest.approx(0.0259)  # the 5th percentile
    assert models.smallest_anchor(model, 512) == pytest.approx(chosen)
    assert model.anchor_generator.scales[-2] == pytest.approx(0.95)  # the largest stays SSDlite's own

    # Given values win and are not reported as chosen; large boxes keep the template's own layout.
    given, choices = recipe.complete_params(
        SSDLITE, SSDLITE.resolve_params({"epochs": 3, "image_size": 64, "batch_size": 8}), items, sizes)
    assert (given["epochs"], given["image_size"], given["batch_size"], choices.chosen) == (3, 64, 8, {})
    large = [boxes_item("big", [400.0, 600.0])]
    assert recipe.default_anchor_min(recipe.box_sides(large, {"big": (1000, 1000)}), 0.2) == 0.2


def test_image_size_never_upscales_past_the_images_nor_leaves_the_template_range():
    tiny_boxes = np.full(10, 0.01)
    assert recipe.default_image_size(320, 1024, tiny_boxes, [400] * 5) == 416  # the images' own 400 pixels
    assert recipe.default_image_size(320, 1024, tiny_boxes, [4000] * 5) == 640  # twice the template's size
    assert recipe.default_image_size(640, 1024, tiny_boxes, [4000] * 5) == 1024  # the catalogue's maximum
    assert recipe.default_image_size(320, 1024, np.full(10, 0.3), [4000] * 5) == 320  # large boxes
    assert recipe.default_image_size(320, 1024, np.zeros(0), [96] * 5) == 320  # no boxes: the template's


def test_fpn_anchors_move_down_on_a_log_scale_and_keep_their_count():
    model = fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None, num_classes=2)
    before = model.rpn.anchor_generator
    assert models.smallest_anchor(model, 640) == pytest.approx(32 / 640)
    models.fit_anchors(model, 0.0125, 640)  # 8 pixels
    after = model.rpn.anchor_generator
    assert after.num_anchors_per_location() == before.num_anchors_per_location()
    assert after.sizes[0][0] == pytest.approx(8.0) and after.sizes[0][-1] == pytest.approx(512.0)
    ratios = [b / a for a, b in zip(after.sizes[0], after.sizes[0][1:])]
    assert ratios == pytest.approx([ratios[0]] * len(ratios))  # still evenly spaced on a log scale
    model.train()
    losses = model([torch.rand(3, 64, 64)], [{"boxes": torch.tensor([[4.0, 4.0, 12.0, 12.0]]),
                                              "labels": torch.tensor([1])}])
    assert all(math.isfinite(float(value)) for value in losses.values())


def test_warmup_then_cosine_per_step():
    factor = recipe.WarmupCosine(warmup_steps=4, total_steps=20, final=0.01)
    assert factor(0) == pytest.approx(0.01) and factor(2) == pytest.approx(0.505) and factor(4) == 1.0
    assert factor(12) == pytest.approx(0.505) and factor(20) == pytest.approx(0.01)
    values = [factor(step) for step in range(4, 21)]
    assert values == sorted(values, reverse=True)
    constant = recipe.WarmupCosine(warmup_steps=0, total_steps=20, final=1.0)
    assert {constant(step) for step in range(21)} == {1.0}


def test_no_weight_decay_on_biases_and_norms():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    optimizer = recipe.optimizer(model, {"learning_rate": 0.01, "weight_decay": 0.1})
    decayed, plain = optimizer.param_groups
    assert [p.shape for p in decayed["params"]] == [(4, 3, 3, 3)] and decayed["weight_decay"] == 0.1
    assert len(plain["params"]) == 3 and plain["weight_decay"] == 0.0


def test_best_epoch_ties_patience_and_zeros():
    model = torch.nn.Linear(1, 1)
    best = recipe.BestEpoch(patience=2)
    assert [best.update(epoch, metric, model) for epoch, metric in enumerate([0.0, 0.0, 0.0, 0.0], 1)] == [
        False] * 4  # nothing learnt yet is no plateau
    stops = [best.update(epoch, metric, model) for epoch, metric in enumerate([0.5, 0.7, 0.7, 0.6], 5)]
    assert stops == [False, False, False, True]  # two epochs after the last improvement (epoch 6)
    assert (best.epoch, best.metric, best.improved) == (7, 0.7, 6)  # the later of the tied epochs is kept
    again = recipe.BestEpoch(patience=2)
    again.load_state_dict(best.state_dict())
    assert again.state_dict() == best.state_dict() and again.stopped
    assert recipe.BestEpoch(0).update(50, 0.1, model) is False  # patience 0: never


def test_early_stopping_exports_the_best_epoch_and_a_retry_does_not_train_again(local_manifest, tmp_path,
                                                                                 monkeypatch):
    manifest = local_manifest("classification")
    scripted = iter([0.5, 0.25, 0.25, 0.9])  # epoch 1 is best; epochs 2 and 3 are not: patience 2 stops there
    states = []
    real_evaluate = engine.evaluate

    def evaluate(model, *args, **kwargs):
        states.append({name: tensor.clone() for name, tensor in model.state_dict().items()})
        return {**real_evaluate(model, *args, **kwargs), "accuracy": next(scripted)}

    monkeypatch.setattr(engine, "evaluate", evaluate)
    params = {**CLASSIFIER_PARAMS, "epochs": 4, "early_stopping_patience": 2, "seed": 3}
    assert run(manifest, tmp_path, "mobilenet_v3_small", params) == 0

    out = tmp_path / "job" / "out"
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["best_epoch"], metrics["stopped_early"], metrics["epochs"]) == (1, True, 3)
    assert metrics["accuracy"] == 0.5 and [h["accuracy"] for h in metrics["history"]] == [0.5, 0.25, 0.25]

    # The published graph is epoch 1's model, not the last one trained.
    first = models.build_model(get_template("mobilenet_v3_small"), 2, 64)
    first.load_state_dict(states[0])
    labels = json.loads((out / "labels.json").read_text())
    image = imaging.to_tensor(first_validation_image(manifest), imaging.InputSpec.from_labels(labels))
    session = onnxruntime.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    with torch.inference_mode():
        expected = first.eval()(torch.from_numpy(image)).numpy()
    np.testing.assert_allclose(session.run(["logits"], {"images": image})[0], expected, atol=1e-3)

    # The checkpoint says training ended: a retry (say the upload failed) exports again without training.
    monkeypatch.setattr(engine, "train_one_epoch", lambda *a, **k: pytest.fail("trained again"))
    (out / "metrics.json").unlink()
    assert run(manifest, tmp_path, "mobilenet_v3_small", params) == 0
    assert json.loads((out / "metrics.json").read_text())["best_epoch"] == 1
