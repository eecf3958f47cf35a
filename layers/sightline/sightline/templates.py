"""The catalogue of training templates: a torchvision builder name, its task, the published weights it starts
from and its hyperparameters.

Pure Python so the API can validate requests without torch; the training container builds the models
(``sightline_training.models``) and finds the weights (``sightline_training.weights``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sightline.contract import CLASSIFICATION, DETECTION, MULTILABEL, TASKS
from sightline.errors import BadRequest


# weights_uri: an object in S3 (the training role reads the stack's artifact bucket only).
S3_OBJECT_URI = re.compile(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/\S+")
MAX_URI_LENGTH = 1024
_TYPE_NAMES = {int: "integer", float: "number", bool: "boolean", str: "string"}


@dataclass(frozen=True)
class ParamSpec:
    """One hyperparameter: a number within ``minimum``..``maximum``, a boolean, or (``str``) one of ``choices``
    or else the URI of an S3 object, ``None`` allowed when that is its default."""

    name: str
    type: type
    default: int | float | bool | str | None
    minimum: int | float | None = None
    maximum: int | float | None = None
    description: str = ""
    base: int | float | None = None  # with a null default: what the training job's recipe starts from
    choices: tuple[str, ...] = ()  # a string param that names one of these (rather than an S3 URI)
    refusal: str = ""  # why a value outside ``choices`` is refused, when the reason is not the value's spelling

    def coerce(self, value: Any) -> int | float | bool | str | None:
        if value is None and self.default is None:
            return None  # null: the training job chooses (sightline_training.recipe)
        if self.type is bool:
            if not isinstance(value, bool):
                raise BadRequest(f"params.{self.name} must be true or false, got {_quoted(value)}",
                                 code="invalid_params")
            return value
        if self.type is str:
            return self._coerce_string(value)
        # bool is an int subclass; "true" epochs is never what the caller meant.
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BadRequest(f"params.{self.name} must be a number, got {value!r}", code="invalid_params")
        if self.type is int:
            if float(value) != int(value):
                raise BadRequest(f"params.{self.name} must be a whole number, got {value!r}", code="invalid_params")
            value = int(value)
        else:
            value = float(value)
        if not self.minimum <= value <= self.maximum:
            raise BadRequest(
                f"params.{self.name} must be between {self.minimum} and {self.maximum}, got {value!r}",
                code="invalid_params",
            )
        return value

    def _coerce_string(self, value: Any) -> str | None:
        if self.choices:
            if not isinstance(value, str) or value not in self.choices:
                why = f": {self.refusal}" if self.refusal else ""
                raise BadRequest(f"params.{self.name} must be one of {', '.join(self.choices)}, got {_quoted(value)}"
                                 f"{why}", code="invalid_params")
            return value
        # Otherwise a string parameter is an S3 object's URI.
        if value is None and self.default is None:
            return None
        if not isinstance(value, str) or len(value) > MAX_URI_LENGTH or not S3_OBJECT_URI.fullmatch(value):
            allowed = " or null" if self.default is None else ""
            raise BadRequest(f"params.{self.name} must be an s3://bucket/key URI{allowed}, got {_quoted(value)}",
                             code="invalid_params")
        return value

    def describe(self) -> dict:
        document: dict[str, Any] = {"type": _TYPE_NAMES[self.type], "default": self.default}
        if self.minimum is not None:
            document.update(minimum=self.minimum, maximum=self.maximum)
        if self.choices:
            document["enum"] = list(self.choices)
        elif self.type is str:
            document["pattern"] = f"^{S3_OBJECT_URI.pattern}$"
        document["description"] = self.description
        return document


def _quoted(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class PretrainedWeights:
    """Published weights a template starts from: a torchvision weight enum member's name and what it learnt on."""

    name: str  # e.g. "MobileNet_V3_Small_Weights.IMAGENET1K_V1" (torchvision.models.get_weight)
    dataset: str

    def describe(self) -> dict:
        return {"name": self.name, "dataset": self.dataset}


IMAGENET = "ImageNet-1k"
COCO = "COCO 2017"


@dataclass(frozen=True)
class TrainingTemplate:
    id: str
    task: str
    description: str
    params: tuple[ParamSpec, ...]
    architecture: str  # the torchvision builder (torchvision.models.get_model)
    weights: PretrainedWeights

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}

    def resolve_params(self, params: dict[str, Any] | None) -> dict[str, Any]:
        """Defaults overlaid with ``params``; unknown names and out-of-range values are rejected."""
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise BadRequest("params must be an object", code="invalid_params")
        specs = {p.name: p for p in self.params}
        unknown = sorted(set(params) - set(specs))
        if unknown:
            raise BadRequest(
                f"unknown params for template {self.id}: {', '.join(unknown)} (allowed: {', '.join(sorted(specs))})",
                code="invalid_params",
            )
        resolved = self.defaults()
        for name, value in params.items():
            resolved[name] = specs[name].coerce(value)
        return resolved

    def describe(self) -> dict:
        return {
            "id": self.id,
            "task": self.task,
            "description": self.description,
            "architecture": self.architecture,
            "weights": self.weights.describe(),
            "params": {p.name: p.describe() for p in self.params},
        }


# The small-data recipe (sightline_training.recipe; README, "Training templates").
_RECIPE = (
    ParamSpec("augment", float, 0.5, 0.0, 1.0, "strength of the training images' augmentation: 0 none; above 0 "
              "horizontal flips, scale jitter (zoom in up to 1 + augment times, out down to 1 / (1 + augment / 2)) "
              "and colour jitter (brightness, contrast, saturation +-0.4 x augment, hue +-0.05 x augment); 0.5 "
              "moderate, 1 strong"),
    ParamSpec("any_orientation", bool, False, description="the images have no up (aerial, satellite, microscope, "
              "top-down inspection): augmentation also flips vertically and turns by 90 degrees"),
    ParamSpec("warmup_epochs", float, 1.0, 0.0, 50.0, "epochs over which the learning rate rises linearly, step "
              "by step, from 1% of learning_rate to learning_rate"),
    ParamSpec("final_learning_rate_fraction", float, 0.01, 0.0, 1.0, "after warmup the learning rate follows a "
              "cosine down to learning_rate x this at the last step; 1 keeps it constant"),
    ParamSpec("weight_decay", float, 0.05, 0.0, 1.0, "AdamW's decoupled weight decay, on weights but not on "
              "biases and normalisation scales"),
    ParamSpec("early_stopping_patience", int, 10, 0, 500, "stop after this many epochs without a better "
              "validation primary metric (0: never); the exported model is always the best epoch's"),
    ParamSpec("seed", int, 0, 0, 2**31 - 1, "seeds initialisation, batch order and augmentation: the same seed, "
              "data and params train the same model on the same machine"),
)

# How the job runs rather than what it learns (sightline_training.precision and .distributed): a checkpoint
# resumes under other values of these.
RUNTIME_PARAMS = ("gpus", "precision")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
_RUNTIME = (
    ParamSpec("gpus", int, 1, 1, 8, "GPUs of one instance to train on, one DistributedDataParallel process each "
              "(torchrun); batch_size is per GPU. Above 1 the job runs on a multi-GPU instance type"),
    ParamSpec("precision", str, "auto", description="arithmetic of training on a GPU: auto is bf16 mixed precision "
              "where the GPU supports it, fp16 (with loss scaling) elsewhere; fp32 turns mixed precision off. A CPU "
              "trains in fp32 unless bf16 is asked for", choices=PRECISIONS),
)

# What the exported model is, after training: a checkpoint also resumes under other values of these (a finished
# one only exports again).
EXPORT_PARAMS = ("quantize", "quantize_tolerance")
QUANTIZATIONS = ("none", "int8")
_QUANTIZE = (
    ParamSpec("quantize", str, "none", description="int8: after the fp32 export, onnxruntime's static INT8 "
              "quantization calibrated on training images; both models are measured on the validation split and "
              "the int8 one is published only if it loses at most quantize_tolerance points of the primary metric "
              "(metrics.json quantization). On a CPU with VNNI, one thread, 224 pixels: ResNet-50 about 3x faster, "
              "ConvNeXt-Tiny 1.6x, EfficientNet-B0 and MobileNetV3 about as fast as fp32", choices=QUANTIZATIONS),
    ParamSpec("quantize_tolerance", float, 1.0, -100.0, 100.0, "points (hundredths) of the primary metric the "
              "int8 model may lose against the fp32 one and still be published; negative: it must gain that many"),
)
# torchvision's detectors export with their postprocessing (NMS, data-dependent shapes), which stops
# onnxruntime's quantization pre-processing; quantized without it SSDlite ran slower and RetinaNet failed
# calibration (README, "INT8 quantization"). So they stay fp32.
_DETECTOR_QUANTIZE = (
    ParamSpec("quantize", str, "none", description="detectors are exported in fp32 only", choices=("none",),
              refusal="INT8 quantization is offered for classifier templates only; detectors are exported in fp32"),
)


def _common(epochs: int, batch_size: int, learning_rate: float, image_size: int) -> tuple[ParamSpec, ...]:
    return (
        ParamSpec("epochs", int, None, 1, 500, f"passes over the training split; null: chosen from its size, "
                  f"{epochs} for 1,000 training images or more, {epochs} x 1,000 / images for fewer (at most 100)",
                  base=epochs),
        # BatchNorm cannot train on a batch of one image.
        ParamSpec("batch_size", int, None, 2, 512, f"images per optimisation step; null: {batch_size}, fewer for a "
                  f"small training split so that an epoch has at least 8 steps (never fewer than 4 images)",
                  base=batch_size),
        ParamSpec("learning_rate", float, learning_rate, 1e-6, 1.0, "initial learning rate"),
        ParamSpec("image_size", int, image_size, 32, 1024, "side of the square the images are resized to"),
        ParamSpec("pretrained", bool, True, description="start from the template's published weights (`weights`: "
                  "ImageNet for classifiers, COCO for detectors); false trains from random initialisation"),
        ParamSpec("weights_uri", str, None, description="s3://bucket/key of a state dict or Sightline checkpoint.pt "
                  "of this template's architecture to start from instead of the published weights"),
        ParamSpec("freeze_backbone_epochs", int, 0, 0, 500, "first epochs in which the backbone stays as loaded "
                  "and only the rest (the new head, a detector's neck and heads) trains"),
    ) + _RECIPE + _RUNTIME


def _detection(params: tuple[ParamSpec, ...], image_size: int) -> tuple[ParamSpec, ...]:
    """A detector's params: ``image_size`` and ``anchor_min`` null by default, chosen from the training boxes."""
    chosen_size = ParamSpec("image_size", int, None, 32, 1024, f"side of the square the images are resized to; "
                            f"null: {image_size}, or up to {min(2 * image_size, 1024)} where 10% of the boxes would "
                            f"be under 16 pixels (never above the images' median longer side)", base=image_size)
    anchor_min = ParamSpec("anchor_min", float, None, 0.005, 0.9, "smallest anchor side as a fraction of the "
                           "image side (the largest stays the template's); null: the 5th percentile of the training "
                           "boxes' sides, at least 0.02, and never larger than the template's own smallest")
    return tuple(chosen_size if p.name == "image_size" else p for p in params) + (anchor_min,) + _DETECTOR_QUANTIZE


# Classifiers: (architecture, published ImageNet weights, learning rate, what it is). Each trains single-label
# (softmax; negatives train a "none" output) under its own name and multi-label (one sigmoid per class) as
# <name>_multilabel.
_CLASSIFIERS = (
    ("mobilenet_v3_small", "MobileNet_V3_Small_Weights.IMAGENET1K_V1", 1e-3,
     "torchvision MobileNetV3-Small (2.5M parameters): fast and small, for few classes and CPUs"),
    ("mobilenet_v3_large", "MobileNet_V3_Large_Weights.IMAGENET1K_V2", 1e-3,
     "torchvision MobileNetV3-Large (5.5M parameters): more accurate than Small at about twice the cost"),
    ("efficientnet_b0", "EfficientNet_B0_Weights.IMAGENET1K_V1", 1e-3,
     "torchvision EfficientNet-B0 (5.3M parameters): a good accuracy for its size"),
    ("resnet50", "ResNet50_Weights.IMAGENET1K_V2", 3e-4,
     "torchvision ResNet-50 (25.6M parameters): the classic, robust backbone"),
    ("convnext_tiny", "ConvNeXt_Tiny_Weights.IMAGENET1K_V1", 1e-4,
     "torchvision ConvNeXt-Tiny (28.6M parameters): the most accurate classifier here, and the slowest"),
)

# Detectors: (architecture, published COCO weights, epochs, batch size, learning rate, image size, what it is).
# Label 0 is the background; images without boxes train it.
_DETECTORS = (
    ("ssdlite320_mobilenet_v3_large", "SSDLite320_MobileNet_V3_Large_Weights.COCO_V1", 30, 16, 1e-3, 320,
     "torchvision SSDlite 320 with a MobileNetV3-Large backbone: a light object detector"),
    ("fasterrcnn_mobilenet_v3_large_fpn", "FasterRCNN_MobileNet_V3_Large_FPN_Weights.COCO_V1", 20, 8, 1e-4, 640,
     "torchvision Faster R-CNN with a MobileNetV3-Large FPN backbone: two-stage, better on small objects "
     "than SSDlite at a moderate cost"),
    ("retinanet_resnet50_fpn_v2", "RetinaNet_ResNet50_FPN_V2_Weights.COCO_V1", 20, 8, 1e-4, 640,
     "torchvision RetinaNet v2 with a ResNet-50 FPN backbone: one-stage with focal loss, accurate, GPU-sized"),
    ("fcos_resnet50_fpn", "FCOS_ResNet50_FPN_Weights.COCO_V1", 20, 8, 1e-4, 640,
     "torchvision FCOS with a ResNet-50 FPN backbone: anchor-free, accurate, GPU-sized"),
)


def _catalogue() -> tuple[TrainingTemplate, ...]:
    templates = []
    for name, weights, learning_rate, description in _CLASSIFIERS:
        params = _common(epochs=15, batch_size=32, learning_rate=learning_rate, image_size=224) + _QUANTIZE
        pretrained = PretrainedWeights(weights, IMAGENET)
        templates.append(TrainingTemplate(name, CLASSIFICATION, f"{description}; one class per image (softmax)",
                                          params, name, pretrained))
        templates.append(TrainingTemplate(f"{name}_multilabel", MULTILABEL,
                                          f"{description}; one sigmoid score per class: any number of classes "
                                          f"per image, or none", params, name, pretrained))
    for name, weights, epochs, batch_size, learning_rate, image_size, description in _DETECTORS:
        params = _detection(_common(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                                    image_size=image_size), image_size)
        templates.append(TrainingTemplate(name, DETECTION, description, params, name, PretrainedWeights(weights, COCO)))
    return tuple(templates)


TEMPLATES: dict[str, TrainingTemplate] = {t.id: t for t in _catalogue()}

DEFAULT_TEMPLATE = {CLASSIFICATION: "mobilenet_v3_small", DETECTION: "ssdlite320_mobilenet_v3_large",
                    MULTILABEL: "mobilenet_v3_small_multilabel"}


def get_template(template_id: str) -> TrainingTemplate:
    try:
        return TEMPLATES[template_id]
    except KeyError:
        raise BadRequest(
            f"unknown template {template_id!r} (available: {', '.join(sorted(TEMPLATES))})",
            code="unknown_template",
        ) from None


def template_for(task: str, template_id: str | None) -> TrainingTemplate:
    """The template to train ``task`` with: the one asked for (which must fit the task) or the task's default."""
    if task not in TASKS:
        raise BadRequest(f"task must be one of {', '.join(TASKS)}, got {task!r}", code="invalid_task")
    template = get_template(template_id or DEFAULT_TEMPLATE[task])
    if template.task != task:
        raise BadRequest(f"template {template.id} trains {template.task} models, not {task}", code="invalid_template")
    return template
