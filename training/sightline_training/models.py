"""torchvision models for the catalogue's templates, and how the exported model wants its input fed.

No pretrained weights: the container has no network at run time, so every model trains from scratch.
"""
from __future__ import annotations

from torch import nn
from torchvision.models import mobilenet_v3_small
from torchvision.models.detection import ssdlite320_mobilenet_v3_large
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from sightline.imaging import InputSpec
from sightline.contract import CLASSIFICATION, MULTILABEL
from sightline.templates import TrainingTemplate

# Tasks trained on a torchvision image classifier: normalised [N, 3, H, W] in, ``logits`` [N, outputs] out. They
# differ in the loss and in how scores are read: a softmax (classification) or one sigmoid per class (multilabel).
CLASSIFIER_TASKS = (CLASSIFICATION, MULTILABEL)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# SSDlite normalises inside the model ([0, 1] -> [-1, 1]); see torchvision's ssdlite320_mobilenet_v3_large.
SSDLITE_MEAN = (0.5, 0.5, 0.5)
SSDLITE_STD = (0.5, 0.5, 0.5)


def input_spec(template: TrainingTemplate, image_size: int) -> InputSpec:
    if template.task in CLASSIFIER_TASKS:
        # The classifier's graph takes normalised [N, 3, H, W]; the caller normalises.
        return InputSpec("images", image_size, image_size, True, 255.0, IMAGENET_MEAN, IMAGENET_STD)
    # The detector's graph takes one [3, H, W] image in [0, 1] and normalises inside.
    return InputSpec("images", image_size, image_size, False, 255.0, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


def build_model(template: TrainingTemplate, num_classes: int, image_size: int) -> nn.Module:
    """The template's torchvision model for ``num_classes`` outputs at ``image_size`` pixels.

    Outputs are the manifest's classes, plus the background output of a classifier trained with negatives
    (see ``train.output_count``); a detector adds its own background label 0.
    """
    if template.id in ("mobilenet_v3_small", "mobilenet_v3_small_multilabel"):
        return mobilenet_v3_small(weights=None, num_classes=num_classes)
    if template.id == "ssdlite320_mobilenet_v3_large":
        return _ssdlite(num_classes, image_size)
    raise ValueError(f"no model builder for template {template.id!r}")


def _ssdlite(num_classes: int, image_size: int) -> nn.Module:
    model = ssdlite320_mobilenet_v3_large(
        weights=None,
        weights_backbone=None,
        num_classes=num_classes + 1,  # label 0 is background
    )
    # The builder fixes the input at 320x320 and ignores ``size``. The anchors (DefaultBoxGenerator) are
    # relative to the input and the backbone is fully convolutional, so only the resize step has to change
    # for the template's image_size to take effect.
    model.transform = GeneralizedRCNNTransform(
        min_size=image_size,
        max_size=image_size,
        image_mean=list(SSDLITE_MEAN),
        image_std=list(SSDLITE_STD),
        size_divisible=1,
        fixed_size=(image_size, image_size),
    )
    return model
