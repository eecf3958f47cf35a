"""The training recipe for small data: values chosen from the dataset where the params leave them null, the
optimiser (AdamW, no weight decay on biases and norms), warmup plus cosine learning rate per step, and early
stopping that keeps the best epoch's weights.

Rules (docs/architecture.md, "Training recipe"):

- ``epochs`` null: the template's epochs (``ParamSpec.base``, meant for about 1,000 training images), times
  1,000 / training images for fewer, at most :data:`MAX_AUTO_EPOCHS`.
- ``batch_size`` null: the template's, lowered for a small training split so that an epoch has at least
  :data:`MIN_STEPS_PER_EPOCH` steps, but no lower than :data:`MIN_AUTO_BATCH` (a from-scratch model learns
  from steps, and 34 images in batches of 16 give 2 an epoch).
- ``image_size`` null (detectors): the smallest multiple of 32 at which 90% of the training boxes are at
  least :data:`MIN_BOX_PIXELS` on a side, no less than the template's size (``base``) and no more than twice
  it, the images' median longer side (no upscaling beyond what the pixels hold) or the catalogue's maximum.
- ``anchor_min`` null (detectors): the 5th percentile of the training boxes' sides, as a fraction of the image
  side, at least :data:`MIN_ANCHOR`; never larger than the template's own smallest anchor (anchors only move
  down, for small objects; datasets of large objects keep the published layout).

A box's side is ``sqrt(w * h)`` after the image is stretched to a square, as the model sees it:
``sqrt((w / W) * (h / H))`` of the image side.
"""
from __future__ import annotations

import copy
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from sightline.templates import TrainingTemplate

from sightline_training.manifest import ManifestItem
from sightline_training.models import fit_anchors as lay_out_anchors, smallest_anchor

log = logging.getLogger(__name__)

BASE_IMAGES = 1000  # the dataset size a template's base epochs are meant for
MAX_AUTO_EPOCHS = 100
MIN_STEPS_PER_EPOCH = 8
MIN_AUTO_BATCH = 4
MIN_BOX_PIXELS = 16  # SSDlite's finest feature map has a stride of 16 pixels
SMALL_BOX_QUANTILE = 0.10
ANCHOR_QUANTILE = 0.05
MIN_ANCHOR = 0.02
WARMUP_START = 0.01  # the warmup's first step runs at 1% of learning_rate


@dataclass
class Choices:
    """What the recipe chose for params left null, and the box sides it chose from (metrics.json ``recipe``)."""

    chosen: dict[str, Any] = field(default_factory=dict)
    box_sides: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = {"chosen": dict(self.chosen)}
        if self.box_sides is not None:
            document["box_sides"] = self.box_sides
        return document


def box_sides(items: Sequence[ManifestItem], sizes: Mapping[str, tuple[int, int]]) -> np.ndarray:
    """Each training box's side as a fraction of its image's (``sqrt((w / W) * (h / H))``); ``sizes`` by item id."""
    sides = [math.sqrt((box.x_max - box.x_min) / width * (box.y_max - box.y_min) / height)
             for item in items for width, height in [sizes[item.id]] for box in item.boxes]
    return np.asarray(sides, dtype=float)


def describe_sides(sides: np.ndarray) -> dict[str, Any]:
    quantiles = {f"p{round(q * 100):02d}": round(float(np.quantile(sides, q)), 4) for q in (0.05, 0.1, 0.5, 0.95)}
    return {"boxes": int(sides.size), **quantiles}


def default_epochs(base: int, train_images: int) -> int:
    return int(min(MAX_AUTO_EPOCHS, max(base, math.ceil(base * BASE_IMAGES / max(1, train_images)))))


def default_batch_size(base: int, train_images: int) -> int:
    return int(min(base, max(MIN_AUTO_BATCH, train_images // MIN_STEPS_PER_EPOCH)))


def default_image_size(base: int, maximum: int, sides: np.ndarray, longer_sides: Sequence[int]) -> int:
    if sides.size == 0:
        return base
    wanted = _multiple_of_32(MIN_BOX_PIXELS / max(float(np.quantile(sides, SMALL_BOX_QUANTILE)), 1e-6))
    native = _multiple_of_32(float(np.median(longer_sides))) if longer_sides else base
    ceiling = max(base, min(2 * base, native, maximum))
    return int(min(max(wanted, base), ceiling))


def default_anchor_min(sides: np.ndarray, own_smallest: float) -> float:
    if sides.size == 0:
        return own_smallest
    return round(min(own_smallest, max(MIN_ANCHOR, float(np.quantile(sides, ANCHOR_QUANTILE)))), 4)


def _multiple_of_32(value: float) -> int:
    return int(math.ceil(value / 32.0) * 32)


def complete_params(template: TrainingTemplate, params: Mapping[str, Any], train_items: Sequence[ManifestItem],
                    sizes: Mapping[str, tuple[int, int]]) -> tuple[dict[str, Any], Choices]:
    """``params`` with ``epochs``, ``batch_size`` and ``image_size`` filled in where null (``anchor_min`` waits for
    the model: :func:`fit_anchors`); ``sizes`` are the training images' upright (width, height) by item id."""
    specs = {spec.name: spec for spec in template.params}
    completed, choices = dict(params), Choices()
    sides = box_sides(train_items, sizes)
    if "anchor_min" in specs:  # a detector
        choices.box_sides = describe_sides(sides) if sides.size else {"boxes": 0}
    if completed.get("epochs") is None:
        completed["epochs"] = choices.chosen["epochs"] = default_epochs(int(specs["epochs"].base), len(train_items))
    if completed.get("batch_size") is None:
        completed["batch_size"] = choices.chosen["batch_size"] = default_batch_size(int(specs["batch_size"].base),
                                                                                    len(train_items))
    if completed.get("image_size") is None:
        longer = [max(sizes[item.id]) for item in train_items]
        spec = specs["image_size"]
        completed["image_size"] = choices.chosen["image_size"] = default_image_size(
            int(spec.base), int(spec.maximum), sides, longer)
    return completed, choices


def fit_anchors(model: nn.Module, params: Mapping[str, Any], train_items: Sequence[ManifestItem],
                sizes: Mapping[str, tuple[int, int]], image_size: int, choices: Choices) -> float:
    """Lay out a detector's anchors from ``params["anchor_min"]`` (null: :func:`default_anchor_min`); the value."""
    own, smallest = smallest_anchor(model, image_size), params.get("anchor_min")
    if smallest is None:
        smallest = choices.chosen["anchor_min"] = default_anchor_min(box_sides(train_items, sizes), own)
    lay_out_anchors(model, float(smallest), image_size)
    log.info("smallest anchor %.4f of the image side (%.1f pixels; the template's own: %.4f)", float(smallest),
             float(smallest) * image_size, own)
    return float(smallest)


# ---------------------------------------------------------------- optimiser, schedule, early stopping


def optimizer(model: nn.Module, params: Mapping[str, Any]) -> torch.optim.Optimizer:
    """AdamW with ``weight_decay`` on weight matrices and kernels only; biases and norm scales (1-D) get none,
    as decaying them towards 0 only fights the normalisation."""
    decay, no_decay = [], []
    for parameter in model.parameters():
        (no_decay if parameter.ndim <= 1 else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": float(params["weight_decay"])},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=float(params["learning_rate"]))


class WarmupCosine:
    """The learning rate factor at optimisation step ``step``: linear from :data:`WARMUP_START` to 1 over
    ``warmup_steps``, then a cosine from 1 to ``final`` at ``total_steps`` (``final`` 1: constant)."""

    def __init__(self, warmup_steps: int, total_steps: int, final: float) -> None:
        self.warmup_steps = warmup_steps
        self.total_steps = max(total_steps, 1)
        self.final = final

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return WARMUP_START + (1.0 - WARMUP_START) * step / self.warmup_steps
        span = max(self.total_steps - self.warmup_steps, 1)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.final + (1.0 - self.final) * 0.5 * (1.0 + math.cos(math.pi * progress))


def lr_scheduler(optimizer: torch.optim.Optimizer, params: Mapping[str, Any], epochs: int,
                 steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Stepped after every optimisation step (``engine.train_one_epoch``), so warmup works on tiny datasets."""
    warmup = round(float(params["warmup_epochs"]) * steps_per_epoch)
    factor = WarmupCosine(warmup, epochs * steps_per_epoch, float(params["final_learning_rate_fraction"]))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class BestEpoch:
    """The best epoch so far by the validation primary metric (higher is better): its number, metric, weights and
    extra results, and whether to stop early.

    On a tie the later epoch wins (a small validation set saturates: accuracy 1.0 at epoch 6 and at epoch 9, and
    the model of epoch 9 has trained longer), but only a strictly better metric counts as progress: training
    stops once ``patience`` epochs (0: never) pass without one. No stop while the best is still 0: a detector
    from scratch often scores 0 for its first epochs, and that is not a plateau.
    """

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.epoch: int | None = None  # 1-based, as in history
        self.metric: float | None = None
        self.weights: dict[str, torch.Tensor] | None = None
        self.extra: Any = None
        self.improved = 0  # the last epoch that beat every earlier one
        self.stopped = False

    def update(self, epoch: int, metric: float, model: nn.Module, extra: Any = None) -> bool:
        """Record epoch ``epoch``'s result; whether training should stop now."""
        if self.metric is None or metric > self.metric:
            self.improved = epoch
        if self.metric is None or metric >= self.metric:
            self.epoch, self.metric, self.extra = epoch, metric, copy.deepcopy(extra)
            self.weights = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
        self.stopped = bool(self.patience and self.metric > 0 and epoch - self.improved >= self.patience)
        return self.stopped

    _STATE = ("epoch", "metric", "weights", "extra", "improved", "stopped")

    def state_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._STATE}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for name in self._STATE:
            setattr(self, name, state[name])
