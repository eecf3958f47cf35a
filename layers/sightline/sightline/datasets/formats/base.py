"""What every annotation format parses into, and the one small interface a format implements.

A format module recognises its files (by name and content) and parses one file into an ``AnnotationDocument``:
the images it annotates, each named as the file names it, with boxes and/or class labels, plus the categories
it declares. Every problem becomes an issue naming the file and the entry; the valid rest is kept. Which image
a name means, and whether a box fits it, is decided later, when the dataset's files are joined
(``sightline.datasets.catalog``), because an annotation file and its images arrive in any order.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

from sightline.datasets.issues import IssueLog

# Exporters round and pad: a box may stick out this far and is clipped; further out it is an error.
BOX_SLACK_FRACTION = 0.02
BOX_SLACK_MIN_PIXELS = 2.0
MIN_BOX_SIDE = 1.0  # pixels, after clipping
# Class names are labels in API answers, manifests and table items: bounded, printable, trimmed.
MAX_LABEL_CHARS = 128
MAX_CATEGORIES = 10_000

# How much of a file ``Format.recognises`` sees.
HEAD_BYTES = 4096

PIXELS = "pixels"
FRACTIONS = "fractions"  # of the image's width and height (YOLO): turned into pixels once the image is known

AnnotationId = int | str


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

    def scaled(self, width: float, height: float, label: str | None = None) -> Box:
        """A box in fractions of the image as pixels of a ``width`` x ``height`` image."""
        return Box(label or self.label, self.x_min * width, self.y_min * height, self.x_max * width, self.y_max * height)


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


@dataclass
class ImageAnnotations:
    """What one annotation file says about one image."""

    id: AnnotationId  # how the file identifies the entry, for issues (a COCO id, a CSV row, an XML file)
    file_name: str  # relative to the annotation file's folder; "<stem>.*" stands for any image extension
    width: int | None = None  # as declared; None when absent (the image file decides)
    height: int | None = None
    boxes: list[Box] = field(default_factory=list)
    label: str | None = None  # the image's class, for classification formats
    labels: list[str] | None = None  # the image's classes when it has several (multi-label), sorted
    alternatives: list[str] = field(default_factory=list)  # other names to try, in order (VOC's JPEGImages/)

    @property
    def describe(self) -> str:
        return f"image {self.id} ({self.file_name})" if str(self.id) != self.file_name else f"image {self.file_name}"

    @property
    def class_labels(self) -> list[str] | None:
        """The image's classes for classification formats (one or several), None when it has boxes instead."""
        if self.labels is not None:
            return self.labels
        return [self.label] if self.label is not None else None

    def set_class_labels(self, labels: list[str]) -> None:
        """One label is single-label classification; several make a multi-label image."""
        unique = sorted(set(labels))
        self.label, self.labels = (unique[0], None) if len(unique) == 1 else (None, unique or None)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "file_name": self.file_name, "width": self.width,
                                "height": self.height, "boxes": [box.to_dict() for box in self.boxes]}
        if self.label is not None:
            data["label"] = self.label
        if self.labels is not None:
            data["labels"] = self.labels
        if self.alternatives:
            data["alternatives"] = self.alternatives
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImageAnnotations:
        return cls(
            id=data["id"],
            file_name=data["file_name"],
            width=data.get("width"),
            height=data.get("height"),
            boxes=[Box.from_dict(box) for box in data.get("boxes", [])],
            label=data.get("label"),
            labels=data.get("labels"),
            alternatives=list(data.get("alternatives", [])),
        )


@dataclass
class AnnotationDocument:
    """One annotation file, parsed: its format, the images it annotates and the categories it declares."""

    format: str
    images: list[ImageAnnotations]
    categories: list[str]  # label names, in the file's order
    box_units: str = PIXELS
    # YOLO label files name classes by index; the names come from the data.yaml or classes.txt beside them.
    class_indices: bool = False

    @property
    def box_count(self) -> int:
        return sum(len(image.boxes) for image in self.images)

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "images": [image.to_dict() for image in self.images],
                "categories": self.categories, "box_units": self.box_units, "class_indices": self.class_indices}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AnnotationDocument:
        # Results stored before formats existed were COCO files and carry no "format".
        return cls(
            format=data.get("format", "coco"),
            images=[ImageAnnotations.from_dict(image) for image in data["images"]],
            categories=list(data["categories"]),
            box_units=data.get("box_units", PIXELS),
            class_indices=bool(data.get("class_indices", False)),
        )


class Format(Protocol):
    """One annotation format. ``recognises`` looks at the name and the first bytes only (cheap, never raises);
    ``parse`` reads the whole file and reports every problem to ``issues`` under ``issue_key``."""

    name: str

    def recognises(self, path: str, head: bytes) -> bool: ...

    def parse(self, data: bytes, *, path: str, issue_key: str, issues: IssueLog) -> AnnotationDocument | None: ...


# ---------------------------------------------------------------- checks shared by the formats


def clean_label(value: Any) -> str | None:
    """A usable class name: a printable string of 1 to ``MAX_LABEL_CHARS`` characters once trimmed."""
    if not isinstance(value, str):
        return None
    label = value.strip()
    if not label or len(label) > MAX_LABEL_CHARS or any(not character.isprintable() for character in label):
        return None
    return label


def label_problem(value: Any) -> str:
    # Never repr() what is not a string: a YAML alias bomb is small as objects and exponential as text.
    if not isinstance(value, str):
        return f"class name is a {type(value).__name__}, not text"
    shown = repr(value[:60]) + ("..." if len(value) > 60 else "")
    return f"class name {shown} is not usable: use 1 to {MAX_LABEL_CHARS} printable characters"


def finite_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def positive_int(value: Any) -> int | None:
    number = finite_number(value)
    if number is None or number != int(number) or number <= 0:
        return None
    return int(number)


def number_from_text(text: str | None) -> float | None:
    """A finite number written as text (CSV cells, XML elements), else None."""
    if text is None:
        return None
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def suffix(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    return ("." + name.rsplit(".", 1)[1].lower()) if "." in name else ""


def basename(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def complete_lines(head: bytes) -> list[str]:
    """The lines of a file's first ``HEAD_BYTES``, without the last one when it may have been cut short."""
    lines = head.decode("utf-8", "replace").splitlines()
    return lines[:-1] if len(head) >= HEAD_BYTES and len(lines) > 1 else lines
