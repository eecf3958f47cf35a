"""CSV files: boxes (``image_path,xmin,ymin,xmax,ymax,label``, as detection tools export them) or class labels
(``image,label``), one row per box or image, image paths relative to the CSV file.

The header decides which, under the column names tools commonly write (``filename``/``image``/``path``,
``x1``/``xmin``/``left``, ``class``/``label``, ...). A file without a header is read as keras-retinanet writes
it: ``path,x1,y1,x2,y2,class``, where a row with empty box cells is an image with no objects.
"""
from __future__ import annotations

import csv
import io
from collections.abc import Iterator

from sightline.datasets.formats.base import (
    AnnotationDocument,
    Box,
    ImageAnnotations,
    clean_label,
    complete_lines,
    label_problem,
    number_from_text,
    positive_int,
    suffix,
)
from sightline.datasets.issues import IssueLog

BOXES = "csv-boxes"
LABELS = "csv-labels"
MAX_FIELD_CHARS = 4096

_IMAGE = ("image_path", "image", "filename", "file_name", "file", "path", "image_name", "image_id", "img")
_COLUMNS = {
    "x_min": ("xmin", "x_min", "x1", "left"),
    "y_min": ("ymin", "y_min", "y1", "top"),
    "x_max": ("xmax", "x_max", "x2", "right"),
    "y_max": ("ymax", "y_max", "y2", "bottom"),
}
_LABEL = ("label", "class", "class_name", "category", "category_name", "name")
_LABELS = ("labels", "classes", "tags")
_WIDTH, _HEIGHT = ("width", "image_width"), ("height", "image_height")
_HEADERLESS_BOXES = {"image": 0, "x_min": 1, "y_min": 2, "x_max": 3, "y_max": 4, "label": 5}


def _normalise(name: str) -> str:
    return name.strip().lower().replace(" ", "_").replace("-", "_")


def _find(header: list[str], names: tuple[str, ...]) -> int | None:
    for name in names:
        if name in header:
            return header.index(name)
    return None


def _columns(header_row: list[str]) -> tuple[str, dict[str, int]] | None:
    """(format, column of each field) from a header row, or None when it is not a header we know."""
    header = [_normalise(cell) for cell in header_row]
    image = _find(header, _IMAGE)
    if image is None:
        return None
    corners = {field: _find(header, names) for field, names in _COLUMNS.items()}
    label = _find(header, _LABEL)
    if all(index is not None for index in corners.values()) and label is not None:
        columns = {"image": image, "label": label, **corners}  # type: ignore[dict-item]
        for field, names in (("width", _WIDTH), ("height", _HEIGHT)):
            index = _find(header, names)
            if index is not None:
                columns[field] = index
        return BOXES, columns
    labels = _find(header, _LABELS)
    if label is not None or labels is not None:
        return LABELS, {"image": image, "label": label if label is not None else labels}  # type: ignore[dict-item]
    return None


def _headerless(row: list[str]) -> bool:
    return len(row) == 6 and all(number_from_text(cell) is not None or not cell.strip() for cell in row[1:5])


def _sniff(head: bytes) -> str | None:
    lines = complete_lines(head)
    try:
        rows = list(csv.reader(lines[:2]))
    except csv.Error:
        return None
    if not rows:
        return None
    found = _columns(rows[0])
    if found is not None:
        return found[0]
    return BOXES if _headerless(rows[0]) else None


def _rows(data: bytes, issue_key: str, issues: IssueLog) -> Iterator[tuple[int, list[str]]] | None:
    """(row number, cells) of every row that is not blank; None (with an issue) when the file is not text."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        issues.add(issue_key, "CSV file is not UTF-8 text")
        return None
    csv.field_size_limit(MAX_FIELD_CHARS)
    return ((number, row) for number, row in enumerate(csv.reader(io.StringIO(text, newline="")), start=1)
            if any(cell.strip() for cell in row))


class _CsvTable:
    """One row per box or image; subclasses say which header they take and what a row means."""

    name: str

    def recognises(self, path: str, head: bytes) -> bool:
        return suffix(path) == ".csv" and _sniff(head) == self.name

    def parse(self, data: bytes, *, path: str, issue_key: str, issues: IssueLog) -> AnnotationDocument | None:
        rows = _rows(data, issue_key, issues)
        if rows is None:
            return None
        images: dict[str, ImageAnnotations] = {}
        categories: dict[str, None] = {}
        columns: dict[str, int] | None = None
        number = 0
        try:
            for number, row in rows:
                if columns is None:
                    columns, is_header = self._columns(row, issue_key, issues)
                    if columns is None:
                        return None
                    if is_header:
                        continue
                if len(row) <= max(columns.values()):
                    issues.add(issue_key, f"row {number} has {len(row)} cells, expected {max(columns.values()) + 1}")
                    continue
                file_name = row[columns["image"]].strip()
                if not file_name:
                    issues.add(issue_key, f"row {number} names no image")
                    continue
                self._row(row, f"row {number}", file_name, columns, images, categories, issue_key, issues)
        except csv.Error as error:
            issues.add(issue_key, f"CSV unreadable after row {number}: {error}")
        return AnnotationDocument(self.name, images=list(images.values()), categories=list(categories))

    def _columns(self, row: list[str], issue_key: str, issues: IssueLog) -> tuple[dict[str, int] | None, bool]:
        raise NotImplementedError

    def _row(self, row: list[str], where: str, file_name: str, columns: dict[str, int],
             images: dict[str, ImageAnnotations], categories: dict[str, None], issue_key: str, issues: IssueLog) -> None:
        raise NotImplementedError


class CsvBoxesFormat(_CsvTable):
    name = BOXES

    def _columns(self, row: list[str], issue_key: str, issues: IssueLog) -> tuple[dict[str, int] | None, bool]:
        found = _columns(row)
        return (found[1], True) if found else (dict(_HEADERLESS_BOXES), False)

    def _row(self, row: list[str], where: str, file_name: str, columns: dict[str, int],
             images: dict[str, ImageAnnotations], categories: dict[str, None], issue_key: str, issues: IssueLog) -> None:
        image = images.get(file_name)
        if image is None:
            width = positive_int(number_from_text(row[columns["width"]])) if "width" in columns else None
            height = positive_int(number_from_text(row[columns["height"]])) if "height" in columns else None
            image = images[file_name] = ImageAnnotations(id=f"{file_name} ({where})", file_name=file_name,
                                                         width=width if height else None, height=height if width else None)
        cells = [row[columns[field]].strip() for field in ("x_min", "y_min", "x_max", "y_max")]
        raw_label = row[columns["label"]].strip()
        if not any(cells) and not raw_label:
            return  # an image listed without a box: it has no objects
        values = [number_from_text(cell) for cell in cells]
        if any(value is None for value in values):
            issues.add(issue_key, f"{where} ({file_name}): box cells {cells} are not numbers")
            return
        label = clean_label(raw_label)
        if label is None:
            issues.add(issue_key, f"{where} ({file_name}): {label_problem(raw_label)}")
            return
        x_min, y_min, x_max, y_max = values  # type: ignore[misc]
        if x_max <= x_min or y_max <= y_min:
            issues.add(issue_key, f"{where} ({file_name}) has a degenerate box [{x_min:g}, {y_min:g}, {x_max:g}, {y_max:g}]")
            return
        image.boxes.append(Box(label, x_min, y_min, x_max, y_max))
        categories.setdefault(label)


class CsvLabelsFormat(_CsvTable):
    """``image,label``: one class per image, or several separated by ``;`` (a multi-label image)."""

    name = LABELS

    def _columns(self, row: list[str], issue_key: str, issues: IssueLog) -> tuple[dict[str, int] | None, bool]:
        found = _columns(row)
        if found is None or found[0] != LABELS:
            issues.add(issue_key, "CSV of labels needs a header naming the image and label columns")
            return None, False
        return found[1], True

    def _row(self, row: list[str], where: str, file_name: str, columns: dict[str, int],
             images: dict[str, ImageAnnotations], categories: dict[str, None], issue_key: str, issues: IssueLog) -> None:
        raw = row[columns["label"]].strip()
        values = [value.strip() for value in raw.split(";") if value.strip()] or [raw]
        labels = []
        for value in values:
            label = clean_label(value)
            if label is None:
                issues.add(issue_key, f"{where} ({file_name}): {label_problem(value)}")
                return
            labels.append(label)
        entry = ImageAnnotations(id=f"{file_name} ({where})", file_name=file_name)
        entry.set_class_labels(labels)
        earlier = images.get(file_name)
        if earlier is not None and earlier.class_labels != entry.class_labels:
            issues.add(issue_key, f"{where}: {file_name} is labelled {'; '.join(earlier.class_labels or [])!r} "
                                  f"earlier; {raw!r} ignored")
            return
        images[file_name] = entry
        for label in labels:
            categories.setdefault(label)
