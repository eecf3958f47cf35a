"""COCO detection JSON (``images``, ``annotations``, ``categories``): validated entry by entry, normalised to
images with pixel boxes.

Each problem is an issue naming the annotation file and the image or annotation id; the valid rest is kept.
"""
from __future__ import annotations

import json
from typing import Any

from sightline.datasets.formats.base import (
    AnnotationDocument,
    AnnotationId,
    Box,
    BoxRejected,
    ImageAnnotations,
    clean_label,
    finite_number,
    fit_box,
    label_problem,
    positive_int,
    suffix,
)
from sightline.datasets.issues import IssueLog

NAME = "coco"
REQUIRED_KEYS = ("images", "annotations", "categories")


def looks_like_coco(document: Any) -> bool:
    return isinstance(document, dict) and any(key in document for key in REQUIRED_KEYS)


def _coco_id(value: Any) -> AnnotationId | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip():
        return value
    return None


def _finite_numbers(value: Any, count: int) -> list[float] | None:
    if not isinstance(value, (list, tuple)) or len(value) != count:
        return None
    numbers = [finite_number(item) for item in value]
    return None if any(number is None for number in numbers) else numbers  # type: ignore[return-value]


def _parse_categories(entries: list[Any], key: str, issues: IssueLog) -> dict[AnnotationId, str]:
    names: dict[AnnotationId, str] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            issues.add(key, f"categories[{index}] is not an object")
            continue
        category_id = _coco_id(entry.get("id"))
        if category_id is None:
            issues.add(key, f"category at categories[{index}] has no valid 'id'")
            continue
        name = entry.get("name")
        if name is None or (isinstance(name, str) and not name.strip()):
            issues.add(key, f"category {category_id} has no 'name'")
            continue
        label = clean_label(name)
        if label is None:
            issues.add(key, f"category {category_id}: {label_problem(name)}")
            continue
        if category_id in names:
            issues.add(key, f"duplicate category id {category_id} (keeping {names[category_id]!r})")
            continue
        names[category_id] = label
    return names


def _parse_images(entries: list[Any], key: str, issues: IssueLog) -> dict[AnnotationId, ImageAnnotations]:
    images: dict[AnnotationId, ImageAnnotations] = {}
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
        declared_width, declared_height = positive_int(width), positive_int(height)
        if (width is not None or height is not None) and (declared_width is None or declared_height is None):
            issues.add(key, f"image {image_id} has an invalid size ({width!r} x {height!r}); using the image file's")
            declared_width = declared_height = None
        images[image_id] = ImageAnnotations(image_id, file_name.strip(), declared_width, declared_height)
    return images


def _parse_annotations(
    entries: list[Any], images: dict[AnnotationId, ImageAnnotations], categories: dict[AnnotationId, str], key: str,
    issues: IssueLog,
) -> None:
    """Adds each valid annotation's box to its image."""
    seen: set[AnnotationId] = set()
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


def parse_coco(document: Any, *, key: str, issues: IssueLog) -> AnnotationDocument | None:
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
    return AnnotationDocument(NAME, images=list(images.values()), categories=list(dict.fromkeys(categories.values())))


class CocoFormat:
    name = NAME

    def recognises(self, path: str, head: bytes) -> bool:
        # A JSON object; whether it is COCO is decided by its keys once parsed (parse says why not).
        return suffix(path) == ".json" and head.lstrip()[:1] == b"{"

    def parse(self, data: bytes, *, path: str, issue_key: str, issues: IssueLog) -> AnnotationDocument | None:
        try:
            document = json.loads(data)
        except (ValueError, RecursionError) as error:  # JSONDecodeError, UnicodeDecodeError, absurd nesting
            issues.add(issue_key, f"not valid JSON: {error}")
            return None
        if not looks_like_coco(document):
            issues.add(issue_key, "not a COCO annotation file: expected a JSON object with 'images', 'annotations', "
                                  "'categories'")
            return None
        return parse_coco(document, key=issue_key, issues=issues)
