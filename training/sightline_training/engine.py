"""One epoch of training and one pass of evaluation, for every task (after torchvision's references)."""
from __future__ import annotations

import logging
import math
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from sightline.contract import CLASSIFICATION, DETECTION, MULTILABEL

from sightline_training import metrics
from sightline_training.errors import JobFailed
from sightline_training.precision import Precision

log = logging.getLogger(__name__)


def train_one_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, data_loader: DataLoader,
                    device: torch.device, epoch: int, scaler: torch.amp.GradScaler, task: str,
                    check_stop: Callable[[], None], print_freq: int = 20,
                    lr_scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
                    precision: Precision | None = None) -> float:
    """Train over ``data_loader`` once; the mean loss per step. ``check_stop`` raises on SIGTERM;
    ``lr_scheduler`` steps after every optimisation step (warmup and cosine are per step, recipe.py).
    ``precision``: autocast dtype and image layout (precision.py); without it, fp16 when ``scaler`` is on."""
    model.train()
    precision = precision or _implied_precision(scaler)
    total, steps = 0.0, 0
    for step, (images, targets) in enumerate(data_loader):
        check_stop()
        images, targets = _to_device(images, targets, device, precision.memory_format)
        with precision.autocast_context(device):
            loss = _loss(model, images, targets, task)
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            raise JobFailed(f"training loss became {loss_value} at epoch {epoch + 1}; try a lower learning_rate")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if lr_scheduler is not None:
            lr_scheduler.step()
        total += loss_value
        steps += 1
        if step % print_freq == 0:
            log.info("epoch %d step %d/%d loss %.4f lr %.6g", epoch + 1, step + 1, len(data_loader), loss_value,
                     optimizer.param_groups[0]["lr"])
    if steps == 0:
        raise JobFailed("the training split gave no batch")
    return total / steps


@torch.no_grad()
def recompute_batch_norm_statistics(model: nn.Module, data_loader: DataLoader, device: torch.device, task: str,
                                    check_stop: Callable[[], None], max_batches: int = 200,
                                    precision: Precision | None = None) -> None:
    """Replace BatchNorm's running statistics by their plain average over training batches ("precise BN").

    The running averages lag the weights they describe: torchvision's momenta (0.01, SSDlite 0.03) are set
    for hundreds of epochs, and a from-scratch run of a few hundred steps ends with statistics so stale that
    the eval-mode model answers the same class for every image. One forward pass over the training data
    with a cumulative average (momentum None) gives the statistics of the final weights.
    """
    norms = [module for module in model.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    # The statistics of what training computes: the same autocast dtype and layout.
    precision = precision or Precision("fp16" if device.type == "cuda" else "fp32")
    model.train()
    try:
        for step, (images, targets) in enumerate(data_loader):
            if step >= max_batches:
                break
            check_stop()
            images, targets = _to_device(images, targets, device, precision.memory_format)
            with precision.autocast_context(device):
                if task == DETECTION:
                    model(images, targets)  # SSD's train-mode forward needs targets; its losses are unused
                else:
                    model(images)
    finally:
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum


def _loss(model: nn.Module, images, targets, task: str) -> torch.Tensor:
    if task == CLASSIFICATION:
        # Targets are class indices; a negative's is the background output after the classes.
        return F.cross_entropy(model(images), targets)
    if task == MULTILABEL:
        # One independent sigmoid per class against a multi-hot target (torch.nn.BCEWithLogitsLoss).
        return F.binary_cross_entropy_with_logits(model(images), targets)
    return sum(model(images, targets).values())


# The key of evaluate's non-scalar results (per-class figures, confusion matrix, mAP by size): run_job keeps
# them for the best epoch (metrics.json) and out of the per-epoch history, which holds numbers only.
DETAILS = "per_class"


@torch.inference_mode()
def evaluate(model: nn.Module, data_loader: DataLoader, device: torch.device, task: str,
             num_classes: int) -> dict:
    """Validation metrics (metrics.py): numbers, plus under ``DETAILS`` what is not one number.

    classification: ``accuracy``, macro and weighted precision, recall and F1; multilabel:
    ``mean_average_precision``, ``f1_micro``, ``f1_macro``; detection: ``map_50_95``, ``map_50``, ``map_75``,
    ``ar_100``. The details hold per-class figures with each class's assumed threshold (and a classifier's
    confusion matrix, a detector's mAP by object size).
    """
    model.eval()
    if task in (CLASSIFICATION, MULTILABEL):
        scores: list[torch.Tensor] = []
        truths: list[torch.Tensor] = []
        for images, targets in data_loader:
            logits = model(images.to(device, non_blocking=True)).float()
            # The scores the predict function reports: softmax over every output (a background's included),
            # or one sigmoid per class.
            scores.append((torch.sigmoid(logits) if task == MULTILABEL else torch.softmax(logits, dim=1)).cpu())
            truths.append(targets)
        if task == MULTILABEL:
            result = metrics.multilabel_metrics(torch.cat(scores).numpy(), torch.cat(truths).numpy() > 0.5)
        else:
            result = metrics.classification_metrics(torch.cat(scores).numpy(), torch.cat(truths).numpy(),
                                                    num_classes)
        details = result.pop(metrics.DETAILS)
        return {**result, DETAILS: details}
    truths: list[metrics.ImageBoxes] = []
    detections: list[metrics.ImageBoxes] = []
    for images, targets in data_loader:
        outputs = model([image.to(device, non_blocking=True) for image in images])
        for output, target in zip(outputs, targets):
            truths.append(metrics.ImageBoxes(target["boxes"].numpy(), target["labels"].numpy()))
            detections.append(metrics.ImageBoxes(output["boxes"].float().cpu().numpy(),
                                                 output["labels"].cpu().numpy(),
                                                 output["scores"].float().cpu().numpy()))
    result = metrics.detection_metrics(truths, detections, num_classes)
    details = result.pop(metrics.DETAILS)
    return {**result, DETAILS: details}


def _implied_precision(scaler: torch.amp.GradScaler) -> Precision:
    # Callers that pass only a scaler get what this function did before precision.py: fp16 when it is on.
    return Precision("fp16" if scaler.is_enabled() else "fp32")


def _to_device(images, targets, device: torch.device,
               memory_format: torch.memory_format = torch.contiguous_format):
    if isinstance(images, torch.Tensor):
        return (images.to(device, non_blocking=True, memory_format=memory_format),
                targets.to(device, non_blocking=True))
    return ([image.to(device, non_blocking=True) for image in images],
            [{key: value.to(device, non_blocking=True) for key, value in target.items()} for target in targets])
