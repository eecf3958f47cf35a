"""YOLO (Ultralytics, Darknet): ``labels/**/<stem>.txt`` beside ``images/**/<stem>.<ext>``, one object per line
as ``<class index> <cx> <cy> <w> <h>`` in fractions of the image; class names in ``data.yaml`` (``names``) or in
``classes.txt`` / ``*.names`` (one per line). A label line with more coordinates is a segmentation polygon: its
bounding box is used. An empty label file is an image with no objects (a background image).
"""
from __future__ import annotations

import posixpath
import re
from typing import Any

import yaml

from sightline.datasets.formats.base import (
    FRACTIONS,
    MAX_CATEGORIES,
    AnnotationDocument,
    Box,
    ImageAnnotations,
    basename,
    clean_label,
    complete_lines,
    label_problem,
    suffix,
)
from sightline.datasets.issues import IssueLog

NAME = "yolo"
NAMES = "yolo-names"  # a class-name list: applies to the YOLO label files of the same archive or dataset
NAMES_FILES = frozenset({"classes.txt", "obj.names", "class_names.txt"})
MAX_NAMES_FILE_BYTES = 1024 * 1024
# Fractions a little outside [0, 1] are rounding; the join clips them like any box.
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_LABEL_LINE = re.compile(rf"\s*\d+(?:\s+{_NUMBER}){{4,}}\s*")


def image_name(label_path: str) -> str:
    """The image a label file annotates, relative to the label file's folder: the nearest ``labels`` folder
    becomes ``images`` (Ultralytics' rule); the extension is any image's (``.*``)."""
    folder, stem = posixpath.dirname(label_path), posixpath.splitext(basename(label_path))[0]
    parts = folder.split("/") if folder else []
    for index in range(len(parts) - 1, -1, -1):
        if parts[index] == "labels":
            below = parts[index + 1:]
            return "/".join([".."] * (len(below) + 1) + ["images", *below, f"{stem}.*"])
    return f"{stem}.*"


def is_names_file(path: str) -> bool:
    name = basename(path).lower()
    return name in NAMES_FILES or suffix(name) == ".names"


class YoloLabelsFormat:
    name = NAME

    def recognises(self, path: str, head: bytes) -> bool:
        if suffix(path) != ".txt" or is_names_file(path):
            return False
        lines = [line for line in complete_lines(head) if line.strip()]
        if not lines:
            return "/labels/" in f"/{path}"  # an empty label file: a background image
        return all(_LABEL_LINE.fullmatch(line) for line in lines[:20])

    def parse(self, data: bytes, *, path: str, issue_key: str, issues: IssueLog) -> AnnotationDocument | None:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            issues.add(issue_key, "not a YOLO label file: not UTF-8 text")
            return None
        image = ImageAnnotations(id=basename(path), file_name=image_name(path))
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            box = _box(line, number, issue_key, issues)
            if box is not None:
                image.boxes.append(box)
        return AnnotationDocument(NAME, images=[image], categories=[], box_units=FRACTIONS, class_indices=True)


def _box(line: str, number: int, issue_key: str, issues: IssueLog) -> Box | None:
    fields = line.split()
    try:
        index = int(fields[0])
        values = [float(value) for value in fields[1:]]
    except ValueError:
        issues.add(issue_key, f"line {number} is not '<class index> <cx> <cy> <w> <h>': {line.strip()[:80]!r}")
        return None
    if index < 0 or len(values) < 4 or any(value != value or abs(value) == float("inf") for value in values):
        issues.add(issue_key, f"line {number} is not '<class index> <cx> <cy> <w> <h>': {line.strip()[:80]!r}")
        return None
    if len(values) == 4:
        cx, cy, w, h = values
        if w <= 0 or h <= 0:
            issues.add(issue_key, f"line {number} has a degenerate box (width {w:g}, height {h:g})")
            return None
        return Box(str(index), cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
    if len(values) % 2:
        issues.add(issue_key, f"line {number} has an odd number of polygon coordinates ({len(values)})")
        return None
    xs, ys = values[0::2], values[1::2]
    if max(xs) <= min(xs) or max(ys) <= min(ys):
        issues.add(issue_key, f"line {number} is a polygon with no area")
        return None
    return Box(str(index), min(xs), min(ys), max(xs), max(ys))


class YoloNamesFormat:
    """``data.yaml`` (``names: [a, b]`` or ``names: {0: a, 1: b}``), ``classes.txt`` or ``*.names``."""

    name = NAMES

    def recognises(self, path: str, head: bytes) -> bool:
        if is_names_file(path):
            return True
        return suffix(path) in (".yaml", ".yml") and re.search(rb"(?m)^names\s*:", head) is not None

    def parse(self, data: bytes, *, path: str, issue_key: str, issues: IssueLog) -> AnnotationDocument | None:
        if len(data) > MAX_NAMES_FILE_BYTES:
            issues.add(issue_key, f"class name file is {len(data)} bytes, more than the limit of {MAX_NAMES_FILE_BYTES}")
            return None
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            issues.add(issue_key, "class name file is not UTF-8 text")
            return None
        raw = _yaml_names(text, issue_key, issues) if suffix(path) in (".yaml", ".yml") else [
            line.strip() for line in text.splitlines() if line.strip()]
        if raw is None:
            return None
        if len(raw) > MAX_CATEGORIES:
            issues.add(issue_key, f"{len(raw)} class names, more than the limit of {MAX_CATEGORIES}")
            return None
        names: list[str] = []
        for index, value in enumerate(raw):
            label = clean_label(value)
            if label is None:
                issues.add(issue_key, f"class {index}: {label_problem(value)}; its boxes are skipped")
                label = ""  # keeps the indices of the names after it; boxes of this class are refused at the join
            names.append(label)
        return AnnotationDocument(NAMES, images=[], categories=names)


def _yaml_names(text: str, issue_key: str, issues: IssueLog) -> list[Any] | None:
    try:
        # safe_load builds plain types only; aliases share objects rather than copying them, so "billion laughs"
        # documents stay small, and only a flat list of names is accepted below.
        document = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError) as error:
        issues.add(issue_key, f"not valid YAML: {str(error).splitlines()[0] if str(error) else type(error).__name__}")
        return None
    names = document.get("names") if isinstance(document, dict) else None
    if isinstance(names, dict):
        indices = [key for key in names if isinstance(key, int) and not isinstance(key, bool)]
        if len(indices) != len(names) or sorted(indices) != list(range(len(indices))):
            issues.add(issue_key, "'names' must map the class indices 0, 1, 2, ... to names")
            return None
        return [names[index] for index in range(len(indices))]
    if isinstance(names, list):
        return names
    issues.add(issue_key, "no 'names' list or mapping: YOLO class names are missing")
    return None
