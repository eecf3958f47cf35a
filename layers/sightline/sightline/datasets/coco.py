"""COCO detection JSON: validated entry by entry, normalised to images with pixel boxes.

Each problem is an issue naming the annotation file and the image or annotation id; the valid rest is kept.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from sightline.datasets.issues import IssueLog

REQUIRED_KEYS = ("images", "annotations", "categories")
# Exporters round and pad: a box may stick out this far and is clipped; further out it is an error.
BOX_SLACK_FRACTION = 0.02
BOX_SLACK_MIN_PIXELS = 2.0
MIN_BOX_SIDE = 1.0  # pixels, after clipping

CocoId = int | str


class BoxRejected(ValueError):
    """The box cannot be used; the message is the issue's reason."""


@dataclass(frozen=True)
class Box:
    label: str
    x_min: float
    y_min: float
    x_max: float
    y_max: float

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "x_min": self.x_min, "y_min": self.y_min, "x_max": self.x_max, "y_max": self.y_max}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Box:
        return cls(data["label"], float(data["x_min"]), float(data["y_min"]), float(data["x_max"]), float(data["y_max"]))

    def describe(self) -> str:
        return f"[{self.x_min:g}, {self.y_min:g}, {self.x_max:g}, {self.y_max:g}]"


@dataclass
class CocoImage:
    id: CocoId
    file_name: str
    width: int | None  # as declared; None when absent or invalid (the image file decides)
    height: int | None
    boxes: list[Box] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "file_name": self.file_name,
            "width": self.width,
            "height": self.height,
            "boxes": [box.to_dict() for box in self.boxes],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CocoImage:
        return cls(
            id=data["id"],
            file_name=data["file_name"],
            width=data.get("width"),
            height=data.get("height"),
            boxes=[Box.from_dict(box) for box in data.get("boxes", [])],
        )


@dataclass
class CocoDocument:
    images: list[CocoImage]
    categories: list[str]  # label names, in the file's order

    @property
    def box_count(self) -> int:
        return sum(len(image.boxes) for image in self.images)

    def to_dict(self) -> dict[str, Any]:
        return {"images": [image.to_dict() for image in self.images], "categories": self.categories}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CocoDocument:
        return cls(images=[CocoImage.from_dict(image) for image in data["images"]], categories=list(data["categories"]))


def fit_box(box: Box, width: int, height: int) -> Box:
    """``box`` clipped to a ``width`` x ``height`` image; ``BoxRejected`` when it is outside or degenerate."""
    slack_x = max(BOX_SLACK_MIN_PIXELS, BOX_SLACK_FRACTION * width)
    slack_y = max(BOX_SLACK_MIN_PIXELS, BOX_SLACK_FRACTION * height)
    if box.x_min < -slack_x or box.y_min < -slack_y or box.x_max > width + slack_x or box.y_max > height + slack_y:
        raise BoxRejected(f"box {box.describe()} extends outside the {width}x{height} image")
    clipped = Box(
        box.label,
        min(max(box.x_min, 0.0), float(width)),
        min(max(box.y_min, 0.0), float(height)),
        min(max(box.x_max, 0.0), float(width)),
        min(max(box.y_max, 0.0), float(height)),
    )
    if clipped.x_max - clipped.x_min < MIN_BOX_SIDE or clipped.y_max - clipped.y_min < MIN_BOX_SIDE:
        raise BoxRejected(f"box {box.describe()} is less than a pixel wide or high inside the {width}x{height} image")
    return clipped


def looks_like_coco(document: Any) -> bool:
    return isinstance(document, dict) and any(key in document for key in REQUIRED_KEYS)


def _coco_id(value: Any) -> CocoId | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip():
        return value
    return None


def _positive_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    if float(value) != int(value) or value <= 0:
        return None
    return int(value)


def _finite_numbers(value: Any, count: int) -> list[float] | None:
    if not isinstance(value, (list, tuple)) or len(value) != count:
        return None
    numbers: list[float] = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, (int, float)) or not math.isfinite(item):
            return None
        numbers.append(float(item))
    return numbers


def _parse_categories(entries: list[Any], key: str, issues: IssueLog) -> dict[CocoId, str]:
    names: dict[CocoId, str] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            issues.add(key, f"categories[{index}] is not an object")
            continue
        category_id = _coco_id(entry.get("id"))
        if category_id is None:
            issues.add(key, f"category at categories[{index}] has no valid 'id'")
            continue
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            issues.add(key, f"category {category_id} has no 'name'")
            continue
        if category_id in names:
            issues.add(key, f"duplicate category id {category_id} (keeping {names[category_id]!r})")
            continue
        names[category_id] = name.strip()
    return names


def _parse_images(entries: list[Any], key: str, issues: IssueLog) -> dict[CocoId, CocoImage]:
    images: dict[CocoId, CocoImage] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            issues.add(key, f"images[{index}] is not an object")
            continue
        image_id = _coco_id(entry.get("id"))
        if image_id is None:
            issues.add(key, f"image at images[{index}] has no valid 'id'")
            continue
        if image_id in images:
            issues.add(key, f"duplicate image id {image_id} (keeping the first)")
            continue
        file_name = entry.get("file_name")
        if not isinstance(file_name, str) or not file_name.strip():
            issues.add(key, f"image {image_id} has no 'file_name'")
            continue
        width, height = entry.get("width"), entry.get("height")
        declared_width, declared_height = _positive_int(width), _positive_int(height)
        if (width is not None or height is not None) and (declared_width is None or declared_height is None):
            issues.add(key, f"image {image_id} has an invalid size ({width!r} x {height!r}); using the image file's")
            declared_width = declared_height = None
        images[image_id] = CocoImage(image_id, file_name.strip(), declared_width, declared_height)
    return images


def _parse_annotations(
    entries: list[Any], images: dict[CocoId, CocoImage], categories: dict[CocoId, str], key: str, issues: IssueLog
) -> None:
    """Adds each valid annotation's box to its image."""
    seen: set[CocoId] = set()
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            issues.add(key, f"annotations[{index}] is not an object")
            continue
        annotation_id = _coco_id(entry.get("id"))
        if annotation_id is None:
            issues.add(key, f"annotation at annotations[{index}] has no valid 'id'")
            continue
        name = f"annotation {annotation_id}"
        if annotation_id in seen:
            issues.add(key, f"duplicate annotation id {annotation_id} (keeping the first)")
            continue
        seen.add(annotation_id)
        if entry.get("iscrowd"):
            continue  # crowd regions mark "many objects here", not one object: detectors train without them
        missing = [field_name for field_name in ("image_id", "category_id", "bbox") if field_name not in entry]
        if missing:
            issues.add(key, f"{name} has no {', '.join(repr(m) for m in missing)}")
            continue
        image = images.get(_coco_id(entry["image_id"]))  # type: ignore[arg-type]
        if image is None:
            issues.add(key, f"{name} refers to unknown image id {entry['image_id']!r}")
            continue
        label = categories.get(_coco_id(entry["category_id"]))  # type: ignore[arg-type]
        if label is None:
            issues.add(key, f"{name} on image {image.id} has unknown category_id {entry['category_id']!r}")
            continue
        bbox = _finite_numbers(entry["bbox"], 4)
        if bbox is None:
            issues.add(key, f"{name} on image {image.id} has an invalid bbox {entry['bbox']!r} (expected [x, y, width, height])")
            continue
        x, y, w, h = bbox
        if w <= 0 or h <= 0:
            issues.add(key, f"{name} on image {image.id} has a degenerate box (width {w:g}, height {h:g})")
            continue
        box = Box(label, x, y, x + w, y + h)
        if image.width is not None and image.height is not None:
            try:
                box = fit_box(box, image.width, image.height)
            except BoxRejected as rejection:
                issues.add(key, f"{name} on image {image.id}: {rejection}")
                continue
        image.boxes.append(box)


def parse_coco(document: Any, *, key: str, issues: IssueLog) -> CocoDocument | None:
    """The valid part of a COCO detection document; ``None`` (with issues) when it is not one at all.

    ``key`` names the annotation file in issues (``datasets/x/ann.json`` or ``datasets/x/a.zip!ann.json``).
    """
    if not isinstance(document, dict):
        issues.add(key, "not a COCO annotation file: expected a JSON object with 'images', 'annotations', 'categories'")
        return None
    problems = [f"missing '{name}'" for name in REQUIRED_KEYS if name not in document]
    problems += [
        f"'{name}' is not a list" for name in REQUIRED_KEYS if name in document and not isinstance(document[name], list)
    ]
    if problems:
        issues.add(key, f"not a valid COCO annotation file: {'; '.join(problems)}")
        return None
    categories = _parse_categories(document["categories"], key, issues)
    images = _parse_images(document["images"], key, issues)
    _parse_annotations(document["annotations"], images, categories, key, issues)
    return CocoDocument(images=list(images.values()), categories=list(dict.fromkeys(categories.values())))
