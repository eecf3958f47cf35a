"""SageMaker Ground Truth and Rekognition Custom Labels manifests: JSON Lines, one image per line.

``{"source-ref": "s3://bucket/key.jpg", "<attr>": ..., "<attr>-metadata": {"type": ...}}``: bounding boxes
(``groundtruth/object-detection``: ``annotations`` of ``class_id``, ``left``, ``top``, ``width``, ``height`` in
pixels, names in the metadata's ``class-map``) or a class (``groundtruth/image-classification``: the metadata's
``class-name``) or several (``groundtruth/image-classification-multilabel``: a list of class ids, names in the
metadata's ``class-map``; or several classification attributes). The migration path from Rekognition: upload the manifest with its images under the dataset.
An image is found by its key when it is in this dataset's folder of the data bucket, else by its file name.
"""
from __future__ import annotations

import json
import posixpath
from typing import Any

from sightline.config import get_settings
from sightline.datasets.formats.base import (
    AnnotationDocument,
    Box,
    ImageAnnotations,
    basename,
    clean_label,
    complete_lines,
    finite_number,
    label_problem,
    positive_int,
    suffix,
)
from sightline.datasets.issues import IssueLog

NAME = "groundtruth"
DETECTION_TYPE = "groundtruth/object-detection"
CLASSIFICATION_TYPE = "groundtruth/image-classification"
MULTILABEL_TYPE = "groundtruth/image-classification-multilabel"
LABEL_TYPES = (DETECTION_TYPE, CLASSIFICATION_TYPE, MULTILABEL_TYPE)
MANIFEST_SUFFIXES = (".manifest", ".jsonl", ".json")


class GroundTruthFormat:
    name = NAME

    def recognises(self, path: str, head: bytes) -> bool:
        if suffix(path) not in MANIFEST_SUFFIXES:
            return False
        lines = [line for line in complete_lines(head) if line.strip()]
        return bool(lines) and '"source-ref"' in lines[0]

    def parse(self, data: bytes, *, path: str, issue_key: str, issues: IssueLog) -> AnnotationDocument | None:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            issues.add(issue_key, "manifest is not UTF-8 text")
            return None
        images: list[ImageAnnotations] = []
        categories: dict[str, None] = {}
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            image = _line(line, number, path, issue_key, issues)
            if image is not None:
                images.append(image)
                for label in [box.label for box in image.boxes] + (image.class_labels or []):
                    categories.setdefault(label)
        return AnnotationDocument(NAME, images=images, categories=list(categories))


def _line(line: str, number: int, path: str, issue_key: str, issues: IssueLog) -> ImageAnnotations | None:
    where = f"line {number}"
    try:
        entry = json.loads(line)
    except (ValueError, RecursionError) as error:
        issues.add(issue_key, f"{where} is not valid JSON: {error}")
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("source-ref"), str):
        issues.add(issue_key, f"{where} has no 'source-ref' string")
        return None
    source = entry["source-ref"]
    if not source.startswith("s3://") or "/" not in source[5:]:
        issues.add(issue_key, f"{where}: source-ref {source[:200]!r} is not an s3:// object URI")
        return None
    image = ImageAnnotations(id=f"{basename(source)} ({where})", **_names(source, path))
    kinds = [(name[: -len("-metadata")], meta) for name, meta in entry.items()
             if name.endswith("-metadata") and isinstance(meta, dict) and name[: -len("-metadata")] in entry]
    known = [(attribute, meta) for attribute, meta in kinds if meta.get("type") in LABEL_TYPES]
    if not known:
        issues.add(issue_key, f"{where} ({basename(source)}) has no label attribute of type "
                              f"{', '.join(LABEL_TYPES)}")
        return None
    labels: list[str] = []
    none_selected = False  # a multi-label attribute with an empty list: an image of none of the classes
    for attribute, meta in known:
        if meta["type"] == DETECTION_TYPE:
            _boxes(entry[attribute], meta, image, where, issue_key, issues)
        elif meta["type"] == MULTILABEL_TYPE:
            labels += _multilabel(entry[attribute], meta, f"{where} ({basename(source)})", issue_key, issues)
            none_selected = none_selected or entry[attribute] == []
        else:
            label = meta.get("class-name")
            cleaned = clean_label(label)
            if cleaned is None:
                issues.add(issue_key, f"{where} ({basename(source)}): {label_problem(label)}")
            else:
                labels.append(cleaned)
    if labels:
        image.set_class_labels(labels)
    elif none_selected:
        image.labels = []
    return image if image.boxes or image.class_labels is not None or any(m["type"] == DETECTION_TYPE for _, m in known) else None


def _multilabel(value: Any, meta: dict, where: str, issue_key: str, issues: IssueLog) -> list[str]:
    """The class names of a multi-label classification attribute: a list of class ids named in the class-map."""
    class_map = meta.get("class-map") if isinstance(meta.get("class-map"), dict) else {}
    if not isinstance(value, list):
        issues.add(issue_key, f"{where}: a multi-label attribute must be a list of class ids")
        return []
    labels = []
    for class_id in value:
        raw = class_map.get(str(class_id))
        label = clean_label(raw)
        if label is None:
            issues.add(issue_key, f"{where}: class id {str(class_id)[:40]!r} "
                                  + ("is not in the class-map" if raw is None else label_problem(raw)))
            continue
        labels.append(label)
    return labels


def _names(source: str, path: str) -> dict[str, Any]:
    """``file_name`` (and ``alternatives``) of the image at ``source``, relative to the manifest at ``path``."""
    bucket, _, key = source[5:].partition("/")
    folder = posixpath.dirname(path)
    if bucket == get_settings().data_bucket and key.startswith(folder + "/"):
        return {"file_name": posixpath.relpath(key, folder)}
    # Another bucket (the usual case when migrating from Rekognition) or a manifest inside an archive: the
    # image is expected among this dataset's images under the same file name.
    return {"file_name": basename(key)}


def _boxes(value: Any, meta: dict, image: ImageAnnotations, where: str, issue_key: str, issues: IssueLog) -> None:
    name = basename(image.file_name)
    if not isinstance(value, dict) or not isinstance(value.get("annotations"), list):
        issues.add(issue_key, f"{where} ({name}) has no 'annotations' list")
        return
    class_map = meta.get("class-map") if isinstance(meta.get("class-map"), dict) else {}
    sizes = value.get("image_size")
    if isinstance(sizes, list) and sizes and isinstance(sizes[0], dict):
        image.width, image.height = positive_int(sizes[0].get("width")), positive_int(sizes[0].get("height"))
        if image.width is None or image.height is None:
            image.width = image.height = None
    for index, annotation in enumerate(value["annotations"]):
        if not isinstance(annotation, dict):
            issues.add(issue_key, f"{where} ({name}) annotation {index} is not an object")
            continue
        numbers = [finite_number(annotation.get(field)) for field in ("left", "top", "width", "height")]
        if any(number is None for number in numbers):
            issues.add(issue_key, f"{where} ({name}) annotation {index} lacks numeric left, top, width, height")
            continue
        left, top, width, height = numbers  # type: ignore[misc]
        if width <= 0 or height <= 0:
            issues.add(issue_key, f"{where} ({name}) annotation {index} has a degenerate box (width {width:g}, "
                                  f"height {height:g})")
            continue
        raw = class_map.get(str(annotation.get("class_id")))
        label = clean_label(raw)
        if label is None:
            issues.add(issue_key, f"{where} ({name}) annotation {index}: class_id {annotation.get('class_id')!r} "
                                  + ("is not in the class-map" if raw is None else label_problem(raw)))
            continue
        image.boxes.append(Box(label, left, top, left + width, top + height))
