"""torchvision models for the catalogue's templates, and how the exported model wants its input fed.

Every template is a torchvision builder (``TrainingTemplate.architecture``) built with random initialisation and
the dataset's number of outputs; :mod:`sightline_training.weights` then loads published (or the user's) weights
into everything but the class-specific head (:data:`ARCHITECTURES`: which tensors those are, and which
parameters ``freeze_backbone_epochs`` freezes).
"""
from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass

import torch
from torch import nn
from torchvision.models import get_model
from torchvision.models.detection.anchor_utils import AnchorGenerator, DefaultBoxGenerator
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops.misc import FrozenBatchNorm2d

from sightline.imaging import InputSpec
from sightline.contract import CLASSIFICATION, MULTILABEL
from sightline.templates import TrainingTemplate

log = logging.getLogger(__name__)

# Tasks trained on a torchvision image classifier: normalised [N, 3, H, W] in, ``logits`` [N, outputs] out. They
# differ in the loss and in how scores are read: a softmax (classification) or one sigmoid per class (multilabel).
CLASSIFIER_TASKS = (CLASSIFICATION, MULTILABEL)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Architecture:
    """What weight loading and backbone freezing need to know about one torchvision architecture."""

    # State-dict keys whose shape depends on the number of classes: never loaded from other weights, always new.
    head: str
    # Parameter-name prefixes of the pretrained feature extractor (what ``freeze_backbone_epochs`` freezes).
    backbone: tuple[str, ...]
    # Pretrained, torchvision's own builder swaps the feature extractor's BatchNorm for FrozenBatchNorm2d (the
    # COCO weights were trained so); from scratch it keeps BatchNorm. ``build_model(pretrained=True)`` does too.
    frozen_norm: bool = False

    def is_head(self, key: str) -> bool:
        return re.fullmatch(self.head, key) is not None

    def is_backbone(self, name: str) -> bool:
        return name.startswith(self.backbone)


_RESNET_TRUNK = ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.", "layer4.")

ARCHITECTURES: dict[str, Architecture] = {
    # Classifiers: the last Linear of ``classifier`` (or ``fc``) maps features to the classes.
    "mobilenet_v3_small": Architecture(r"classifier\.3\..*", ("features.",)),
    "mobilenet_v3_large": Architecture(r"classifier\.3\..*", ("features.",)),
    "efficientnet_b0": Architecture(r"classifier\.1\..*", ("features.",)),
    "resnet50": Architecture(r"fc\..*", _RESNET_TRUNK),
    "convnext_tiny": Architecture(r"classifier\.2\..*", ("features.",)),
    # Detectors: only the class scores (and Faster R-CNN's per-class boxes) depend on the classes; the region
    # proposals, box regression and the rest of the heads keep their COCO training.
    "ssdlite320_mobilenet_v3_large": Architecture(r"head\.classification_head\.module_list\.\d+\.1\..*",
                                                  ("backbone.features.",)),
    "fasterrcnn_mobilenet_v3_large_fpn": Architecture(r"roi_heads\.box_predictor\..*", ("backbone.body.",),
                                                      frozen_norm=True),
    "retinanet_resnet50_fpn_v2": Architecture(r"head\.classification_head\.cls_logits\..*", ("backbone.body.",)),
    "fcos_resnet50_fpn": Architecture(r"head\.classification_head\.cls_logits\..*", ("backbone.body.",),
                                      frozen_norm=True),
}


def architecture(template: TrainingTemplate) -> Architecture:
    try:
        return ARCHITECTURES[template.architecture]
    except KeyError:
        raise ValueError(f"no model builder for template {template.id!r}") from None


def input_spec(template: TrainingTemplate, image_size: int) -> InputSpec:
    if template.task in CLASSIFIER_TASKS:
        # The classifier's graph takes normalised [N, 3, H, W]; the caller normalises.
        return InputSpec("images", image_size, image_size, True, 255.0, IMAGENET_MEAN, IMAGENET_STD)
    # The detector's graph takes one [3, H, W] image in [0, 1] and normalises inside.
    return InputSpec("images", image_size, image_size, False, 255.0, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


def build_model(template: TrainingTemplate, num_classes: int, image_size: int, pretrained: bool = False) -> nn.Module:
    """The template's torchvision model for ``num_classes`` outputs at ``image_size`` pixels, randomly initialised.

    Outputs are the manifest's classes, plus the background output of a classifier trained with negatives
    (see ``train.output_count``); a detector adds its own background label 0. ``pretrained``: laid out for
    pretrained weights to be loaded (:mod:`sightline_training.weights`), as torchvision's builder lays it out.
    """
    layout = architecture(template)
    if template.task in CLASSIFIER_TASKS:
        return get_model(template.architecture, weights=None, num_classes=num_classes)
    model = get_model(template.architecture, weights=None, weights_backbone=None,
                      num_classes=num_classes + 1)  # label 0 is background
    # The builders resize to their own sizes (SSDlite 320x320, the others 800 to 1333 pixels). Each keeps its
    # normalisation, inside the graph, and takes the template's square image_size: SSDlite's anchors are relative
    # to the input and every backbone is fully convolutional, so only the resize step has to change.
    transform = model.transform
    model.transform = GeneralizedRCNNTransform(
        min_size=image_size,
        max_size=image_size,
        image_mean=list(transform.image_mean),
        image_std=list(transform.image_std),
        size_divisible=transform.size_divisible,
        fixed_size=(image_size, image_size),
    )
    if pretrained and layout.frozen_norm:
        freeze_batch_norm(model.backbone.body)
    return model


def freeze_batch_norm(module: nn.Module) -> None:
    """Replace every BatchNorm2d under ``module`` by torchvision's FrozenBatchNorm2d with its default eps, as the
    detection builders do when they build for pretrained weights (the statistics become fixed buffers)."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features)
            with torch.no_grad():
                for buffer in ("weight", "bias", "running_mean", "running_var"):
                    getattr(frozen, buffer).copy_(getattr(child, buffer))
            setattr(module, name, frozen)
        else:
            freeze_batch_norm(child)


def freeze_backbone(model: nn.Module, template: TrainingTemplate, frozen: bool) -> int:
    """Stop (``frozen``) or resume training the pretrained feature extractor; the number of tensors affected.

    Frozen parameters get no gradient, so the optimiser leaves them (and their weight decay) alone; the head
    and, in a detector, the neck and box heads keep training.
    """
    layout = architecture(template)
    backbone = [parameter for name, parameter in model.named_parameters() if layout.is_backbone(name)]
    changed = sum(parameter.requires_grad == frozen for parameter in backbone)
    for parameter in backbone:
        parameter.requires_grad_(not frozen)
    if changed:
        log.info("backbone %s (%d tensors)", "frozen" if frozen else "training again", changed)
    return len(backbone)


def detection_limits(model: nn.Module) -> tuple[float, float, int]:
    """A detector's (score threshold, NMS IoU threshold, detections per image): on the model, or on its
    ``roi_heads`` for the two-stage Faster R-CNN."""
    owner = getattr(model, "roi_heads", model)
    return float(owner.score_thresh), float(owner.nms_thresh), int(owner.detections_per_img)


# ---------------------------------------------------------------- anchors for small objects (recipe.fit_anchors)


def _anchor_owner(model: nn.Module) -> tuple[nn.Module, str]:
    """The module holding a detector's anchor generator (Faster R-CNN's is its RPN's) and the attribute name."""
    owner = getattr(model, "rpn", model)
    return owner, "anchor_generator"


def smallest_anchor(model: nn.Module, image_size: int) -> float:
    """A detector's smallest anchor side as a fraction of the (square) input's side."""
    owner, name = _anchor_owner(model)
    generator = getattr(owner, name)
    if isinstance(generator, DefaultBoxGenerator):
        return float(generator.scales[0])
    return min(min(sizes) for sizes in generator.sizes) / image_size


def fit_anchors(model: nn.Module, smallest: float, image_size: int) -> None:
    """Make ``smallest`` (a fraction of the input's side) the detector's smallest anchor; the largest stays.

    SSDlite (DefaultBoxGenerator): ``min_ratio`` becomes ``smallest``, the levels' scales spread linearly up to
    the last level's own, as torchvision's builder spreads them. FPN detectors (AnchorGenerator, pixel sizes):
    every size moves on a log scale from [own smallest, own largest] to [smallest * image_size, own largest].
    The number of anchors per location is unchanged, so the heads and any loaded weights still fit; anchors are
    not in the state dict, so whoever rebuilds a trained model from a checkpoint lays them out again.
    """
    owner, name = _anchor_owner(model)
    generator = getattr(owner, name)
    if isinstance(generator, DefaultBoxGenerator):
        largest = float(generator.scales[-2])  # scales end with an extra 1.0 for the last level's second box
        setattr(owner, name, DefaultBoxGenerator(generator.aspect_ratios, min_ratio=min(smallest, largest),
                                                 max_ratio=largest, steps=generator.steps, clip=generator.clip))
        return
    low, high = min(min(s) for s in generator.sizes), max(max(s) for s in generator.sizes)
    target = min(smallest * image_size, high)
    span = math.log(high / low) if high > low else 1.0

    def moved(size: float) -> float:
        return float(math.exp(math.log(target) + (math.log(size) - math.log(low)) / span * math.log(high / target)))

    sizes = tuple(tuple(moved(size) for size in level) for level in generator.sizes)
    setattr(owner, name, AnchorGenerator(sizes, generator.aspect_ratios))
