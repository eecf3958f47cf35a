"""Load and check a ``sightline.manifest/v1`` document (see docs/architecture.md, "Manifest").

Every problem is an :class:`InvalidInput` naming the item, so the job fails early with a one-line reason
instead of part-way through an epoch.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from sightline.contract import CLASSIFICATION, DETECTION, MANIFEST_FORMAT, MULTILABEL, TASKS

from sightline_training import storage
from sightline_training.errors import InvalidInput, one_line

TRAIN = "train"
VALIDATION = "validation"
SPLITS = (TRAIN, VALIDATION)


@dataclass(frozen=True)
class Box:
    """A ground-truth box in the original image's pixels; ``label_id`` is 1 + its index in ``classes``."""

    label_id: int
    x_min: float
    y_min: float
    x_max: float
    y_max: float


@dataclass(frozen=True)
class ManifestItem:
    id: str
    image_uri: str
    split: str
    class_index: int | None  # classification: index into ``classes``; None for a negative (``"label": null``)
    boxes: tuple[Box, ...]  # detection: may be empty (a negative example)
    class_indices: tuple[int, ...] = ()  # multilabel: indices into ``classes``, ascending; empty for a negative


@dataclass(frozen=True)
class Manifest:
    task: str
    classes: tuple[str, ...]
    datasets: tuple[str, ...]
    items: tuple[ManifestItem, ...]

    def split(self, name: str) -> list[ManifestItem]:
        return [item for item in self.items if item.split == name]

    @property
    def has_negatives(self) -> bool:
        """Classification items of no class (``"label": null``): the model then gets a background output."""
        return self.task == CLASSIFICATION and any(item.class_index is None for item in self.items)


def load_manifest(uri: str) -> Manifest:
    try:
        raw = storage.read_bytes(uri)
    except storage.ObjectNotFound:
        raise InvalidInput(f"manifest not found: {uri}") from None
    except Exception as error:  # permissions, bad bucket name, unreachable endpoint
        raise InvalidInput(f"manifest unreadable: {uri}: {one_line(error)}") from None
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidInput(f"manifest is not valid JSON: {uri}: {error}") from None
    return parse_manifest(document, uri)


def parse_manifest(document: Any, manifest_uri: str) -> Manifest:
    if not isinstance(document, dict):
        raise InvalidInput("manifest must be a JSON object")
    if document.get("format") != MANIFEST_FORMAT:
        raise InvalidInput(f"manifest format must be {MANIFEST_FORMAT!r}, got {document.get('format')!r}")
    task = document.get("task")
    if task not in TASKS:
        raise InvalidInput(f"manifest task must be one of {', '.join(TASKS)}, got {task!r}")
    classes = document.get("classes")
    if not isinstance(classes, list) or not all(isinstance(c, str) and c for c in classes):
        raise InvalidInput("manifest classes must be a list of non-empty strings")
    # Output index i means classes[i]: the order is the contract, so it must be the documented one.
    if classes != sorted(set(classes)):
        raise InvalidInput("manifest classes must be sorted and unique")
    datasets = document.get("datasets", [])
    if not isinstance(datasets, list):
        raise InvalidInput("manifest datasets must be a list")
    raw_items = document.get("items")
    if not isinstance(raw_items, list):
        raise InvalidInput("manifest items must be a list")
    class_index = {name: i for i, name in enumerate(classes)}
    items = tuple(_parse_item(raw, n, task, class_index, manifest_uri) for n, raw in enumerate(raw_items))
    return Manifest(task=task, classes=tuple(classes), datasets=tuple(map(str, datasets)), items=items)


def _parse_item(raw: Any, position: int, task: str, class_index: dict[str, int], manifest_uri: str) -> ManifestItem:
    if not isinstance(raw, dict):
        raise InvalidInput(f"manifest item {position} must be an object")
    item_id = raw.get("id")
    if not isinstance(item_id, str) or not item_id:
        raise InvalidInput(f"manifest item {position} has no id")
    where = f"manifest item {item_id}"
    split = raw.get("split")
    if split not in SPLITS:
        raise InvalidInput(f"{where}: split must be one of {', '.join(SPLITS)}, got {split!r}")
    image_uri = _image_uri(raw.get("image"), where, manifest_uri)
    _refuse_other_tasks_fields(raw, task, where)
    if task == CLASSIFICATION:
        if "label" not in raw:
            raise InvalidInput(f"{where}: classification items carry \"label\" (null for an image of no class)")
        label = raw["label"]
        if label is None:  # a negative: an image of none of the classes
            return ManifestItem(item_id, image_uri, split, None, ())
        if label not in class_index:
            raise InvalidInput(f"{where}: label {label!r} is not one of the manifest classes")
        return ManifestItem(item_id, image_uri, split, class_index[label], ())
    if task == MULTILABEL:
        return ManifestItem(item_id, image_uri, split, None, (), _class_indices(raw.get("labels"), where, class_index))
    assert task == DETECTION
    raw_boxes = raw.get("boxes", [])
    if not isinstance(raw_boxes, list):
        raise InvalidInput(f"{where}: boxes must be a list")
    boxes = tuple(_parse_box(box, where, class_index) for box in raw_boxes)
    return ManifestItem(item_id, image_uri, split, None, boxes)


# The label fields and the one task each belongs to: an item of another task carrying one is a wrong manifest.
_LABEL_FIELDS = {"label": CLASSIFICATION, "labels": MULTILABEL}


def _refuse_other_tasks_fields(raw: dict, task: str, where: str) -> None:
    for name, owner in _LABEL_FIELDS.items():
        if name in raw and task != owner:
            raise InvalidInput(f"{where}: \"{name}\" belongs to {owner} items, not to a {task} manifest")


def _class_indices(labels: Any, where: str, class_index: dict[str, int]) -> tuple[int, ...]:
    """A multilabel item's ``labels``: a sorted list of unique class names, empty for an image of none."""
    if not isinstance(labels, list):
        raise InvalidInput(f"{where}: multilabel items carry \"labels\", a list of class names ([] for an image "
                           f"of none of the classes), got {labels!r}")
    unknown = [label for label in labels if not isinstance(label, str) or label not in class_index]
    if unknown:
        raise InvalidInput(f"{where}: label {unknown[0]!r} is not one of the manifest classes")
    if labels != sorted(set(labels)):
        raise InvalidInput(f"{where}: labels must be sorted and unique, got {labels!r}")
    return tuple(class_index[label] for label in labels)


def _image_uri(image: Any, where: str, manifest_uri: str) -> str:
    """The contract's ``{"bucket", "key"}``; local runs may instead give ``{"uri"}`` (relative to the manifest)."""
    if isinstance(image, dict) and isinstance(image.get("bucket"), str) and isinstance(image.get("key"), str):
        if image["bucket"] and image["key"]:
            return storage.s3_uri(image["bucket"], image["key"])
    if isinstance(image, dict) and isinstance(image.get("uri"), str) and image["uri"]:
        uri = image["uri"]
        if "://" in uri or uri.startswith("/"):
            return uri
        return storage.join(manifest_uri.rsplit("/", 1)[0] if "/" in manifest_uri else ".", uri)
    raise InvalidInput(f"{where}: image must be {{\"bucket\", \"key\"}}")


def _parse_box(raw: Any, where: str, class_index: dict[str, int]) -> Box:
    if not isinstance(raw, dict):
        raise InvalidInput(f"{where}: every box must be an object")
    label = raw.get("label")
    if label not in class_index:
        raise InvalidInput(f"{where}: box label {label!r} is not one of the manifest classes")
    coordinates = []
    for name in ("x_min", "y_min", "x_max", "y_max"):
        value = raw.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InvalidInput(f"{where}: box {name} must be a finite number, got {value!r}")
        coordinates.append(float(value))
    x_min, y_min, x_max, y_max = coordinates
    if x_max <= x_min or y_max <= y_min:
        raise InvalidInput(f"{where}: box {coordinates} has no area (need x_min < x_max and y_min < y_max)")
    return Box(class_index[label] + 1, x_min, y_min, x_max, y_max)

