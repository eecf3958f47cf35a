"""Pascal VOC: one XML file per image (``Annotations/<id>.xml``), its image in ``JPEGImages/`` or beside it.

Parsed with defusedxml, which refuses DTDs, entity declarations and external references outright (XXE, the
"billion laughs" expansion), so a hostile file costs nothing but its own issue.
"""
from __future__ import annotations

import posixpath
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as safe_xml
from defusedxml import DefusedXmlException

from sightline.datasets.formats.base import (
    AnnotationDocument,
    Box,
    ImageAnnotations,
    basename,
    clean_label,
    label_problem,
    number_from_text,
    positive_int,
    suffix,
)
from sightline.datasets.issues import IssueLog

NAME = "voc"
IMAGE_FOLDER = "JPEGImages"


def _text(element: Element | None, tag: str) -> str | None:
    found = element.find(tag) if element is not None else None
    return found.text.strip() if found is not None and found.text is not None and found.text.strip() else None


def _image_names(path: str, file_name: str) -> tuple[str, list[str]]:
    """Where the image of ``path`` (an XML file) is: VOC keeps it in ``JPEGImages/`` beside ``Annotations/``;
    exporters also write it beside the XML file. Both are tried, then the join's unique-file-name rule."""
    name = basename(file_name.replace("\\", "/"))
    folder = posixpath.dirname(path)
    if posixpath.basename(folder).lower() == "annotations":
        return f"../{IMAGE_FOLDER}/{name}", [name]
    return name, [f"../{IMAGE_FOLDER}/{name}"]


class VocFormat:
    name = NAME

    def recognises(self, path: str, head: bytes) -> bool:
        return suffix(path) == ".xml" and b"<annotation" in head

    def parse(self, data: bytes, *, path: str, issue_key: str, issues: IssueLog) -> AnnotationDocument | None:
        try:
            root = safe_xml.fromstring(data, forbid_dtd=True)
        except DefusedXmlException as refusal:
            issues.add(issue_key, f"XML refused: {type(refusal).__name__} (DTDs, entities and external references "
                                  "are not allowed)")
            return None
        except (ParseError, ValueError) as error:
            issues.add(issue_key, f"not valid XML: {error}")
            return None
        if root.tag != "annotation":
            issues.add(issue_key, f"not a Pascal VOC annotation: the root element is <{root.tag}>, not <annotation>")
            return None
        file_name = _text(root, "filename")
        if file_name is None:
            # Some tools leave <filename> out; VOC's own convention is the XML file's name with .jpg.
            file_name = posixpath.splitext(basename(path))[0] + ".*"
        size = root.find("size")
        width, height = positive_int(number_from_text(_text(size, "width"))), positive_int(
            number_from_text(_text(size, "height")))
        if size is not None and (width is None or height is None):
            issues.add(issue_key, f"<size> is not usable ({_text(size, 'width')!r} x {_text(size, 'height')!r}); "
                                  "using the image file's")
            width = height = None
        primary, alternatives = _image_names(path, file_name)
        image = ImageAnnotations(id=basename(path), file_name=primary, width=width, height=height,
                                 alternatives=alternatives)
        categories: dict[str, None] = {}
        for number, element in enumerate(root.findall("object"), start=1):
            box = self._box(element, number, issue_key, issues)
            if box is not None:
                image.boxes.append(box)
                categories.setdefault(box.label)
        return AnnotationDocument(NAME, images=[image], categories=list(categories))

    @staticmethod
    def _box(element: Element, number: int, issue_key: str, issues: IssueLog) -> Box | None:
        raw_name = _text(element, "name")
        label = clean_label(raw_name)
        if label is None:
            issues.add(issue_key, f"object {number}: " + ("has no <name>" if raw_name is None else label_problem(raw_name)))
            return None
        bndbox = element.find("bndbox")
        if bndbox is None:
            issues.add(issue_key, f"object {number} ({label}) has no <bndbox>")
            return None
        values = [number_from_text(_text(bndbox, tag)) for tag in ("xmin", "ymin", "xmax", "ymax")]
        if any(value is None for value in values):
            issues.add(issue_key, f"object {number} ({label}) has a <bndbox> without numeric xmin, ymin, xmax, ymax")
            return None
        x_min, y_min, x_max, y_max = values  # type: ignore[misc]
        if x_max <= x_min or y_max <= y_min:
            issues.add(issue_key, f"object {number} ({label}) has a degenerate box [{x_min:g}, {y_min:g}, {x_max:g}, "
                                  f"{y_max:g}]")
            return None
        # VOC's pixel indices are 1-based and inclusive: the box [1, 1, W, H] covers the whole image.
        return Box(label, x_min - 1.0, y_min - 1.0, x_max, y_max)
