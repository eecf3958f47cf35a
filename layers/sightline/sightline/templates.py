"""The catalogue of training templates: a torchvision builder name, its task and its hyperparameters.

Pure Python so the API can validate requests without torch; the training container builds the models.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sightline.contract import CLASSIFICATION, DETECTION, MULTILABEL, TASKS
from sightline.errors import BadRequest


@dataclass(frozen=True)
class ParamSpec:
    name: str
    type: type
    default: int | float
    minimum: int | float
    maximum: int | float
    description: str

    def coerce(self, value: Any) -> int | float:
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

    def describe(self) -> dict:
        return {
            "type": "integer" if self.type is int else "number",
            "default": self.default,
            "minimum": self.minimum,
            "maximum": self.maximum,
            "description": self.description,
        }


@dataclass(frozen=True)
class TrainingTemplate:
    id: str
    task: str
    description: str
    params: tuple[ParamSpec, ...]

    def defaults(self) -> dict[str, int | float]:
        return {p.name: p.default for p in self.params}

    def resolve_params(self, params: dict[str, Any] | None) -> dict[str, int | float]:
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
            "params": {p.name: p.describe() for p in self.params},
        }


def _common(epochs: int, batch_size: int, learning_rate: float, image_size: int) -> tuple[ParamSpec, ...]:
    return (
        ParamSpec("epochs", int, epochs, 1, 500, "passes over the training split"),
        # BatchNorm cannot train on a batch of one image.
        ParamSpec("batch_size", int, batch_size, 2, 512, "images per optimisation step"),
        ParamSpec("learning_rate", float, learning_rate, 1e-6, 1.0, "initial learning rate"),
        ParamSpec("image_size", int, image_size, 32, 1024, "side of the square the images are resized to"),
    )


TEMPLATES: dict[str, TrainingTemplate] = {
    t.id: t
    for t in (
        TrainingTemplate(
            id="mobilenet_v3_small",
            task=CLASSIFICATION,
            description="torchvision MobileNetV3-Small image classifier: fast, small, good for few classes",
            params=_common(epochs=15, batch_size=32, learning_rate=1e-3, image_size=224),
        ),
        TrainingTemplate(
            id="ssdlite320_mobilenet_v3_large",
            task=DETECTION,
            description="torchvision SSDlite 320 with a MobileNetV3-Large backbone: a light object detector",
            params=_common(epochs=30, batch_size=16, learning_rate=1e-3, image_size=320),
        ),
        TrainingTemplate(
            id="mobilenet_v3_small_multilabel",
            task=MULTILABEL,
            description="torchvision MobileNetV3-Small with one sigmoid score per class: any number of classes "
                        "per image, or none",
            params=_common(epochs=15, batch_size=32, learning_rate=1e-3, image_size=224),
        ),
    )
}

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
