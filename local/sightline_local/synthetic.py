"""Small generated image sets (coloured shapes on a noisy background) for the demo and the tests.

Nothing can be downloaded at run time, so the demo and the tests make their own labelled data.
"""
from __future__ import annotations

import io
import json
import random
import zipfile
from dataclasses import dataclass

from PIL import Image, ImageDraw

SHAPES = ("circle", "square")
_COLOURS = {"circle": (220, 40, 40), "square": (40, 90, 220)}


@dataclass(frozen=True)
class Box:
    label: str
    x_min: int
    y_min: int
    x_max: int
    y_max: int


def _background(rng: random.Random, width: int, height: int) -> Image.Image:
    base = tuple(rng.randint(150, 230) for _ in range(3))
    image = Image.new("RGB", (width, height), base)
    draw = ImageDraw.Draw(image)
    for _ in range(width * height // 60):
        x, y = rng.randrange(width), rng.randrange(height)
        shade = tuple(max(0, min(255, c + rng.randint(-25, 25))) for c in base)
        draw.point((x, y), fill=shade)
    return image


def draw_shape(draw: ImageDraw.ImageDraw, label: str, box: tuple[int, int, int, int]) -> None:
    if label == "circle":
        draw.ellipse(box, fill=_COLOURS[label])
    else:
        draw.rectangle(box, fill=_COLOURS[label])


def shapes_image(
    rng: random.Random, width: int = 96, height: int = 96, count: int = 1, labels: tuple[str, ...] = SHAPES
) -> tuple[Image.Image, list[Box]]:
    """An image with ``count`` non-overlapping shapes and their boxes (pixels, inclusive-exclusive)."""
    image = _background(rng, width, height)
    draw = ImageDraw.Draw(image)
    boxes: list[Box] = []
    for _ in range(count):
        for _attempt in range(30):
            side = rng.randint(min(width, height) // 4, min(width, height) // 2)
            x0, y0 = rng.randint(0, width - side), rng.randint(0, height - side)
            candidate = (x0, y0, x0 + side, y0 + side)
            if all(candidate[2] <= b.x_min or candidate[0] >= b.x_max or candidate[3] <= b.y_min or candidate[1] >= b.y_max for b in boxes):
                label = rng.choice(labels)
                draw_shape(draw, label, (x0, y0, x0 + side - 1, y0 + side - 1))
                boxes.append(Box(label, *candidate))
                break
    return image, boxes


def encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def classification_zip(per_class: int = 8, size: int = 64, seed: int = 0, extra: dict[str, bytes] | None = None) -> bytes:
    """A zip of class folders ``<class>/<n>.png``; ``extra`` adds members as they are (bad files, for tests)."""
    rng = random.Random(seed)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for label in SHAPES:
            for n in range(per_class):
                image, _ = shapes_image(rng, size, size, count=1, labels=(label,))
                archive.writestr(f"{label}/{n:03d}.png", encode(image))
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return buffer.getvalue()


def coco_dataset(images: int = 12, size: int = 96, seed: int = 0, prefix: str = "images/") -> tuple[dict, dict[str, bytes]]:
    """A COCO detection document and its images ``{file_name: bytes}``; file names carry ``prefix``."""
    rng = random.Random(seed)
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(SHAPES)]
    category_id = {c["name"]: c["id"] for c in categories}
    document: dict = {"images": [], "annotations": [], "categories": categories}
    files: dict[str, bytes] = {}
    annotation_id = 1
    for image_id in range(1, images + 1):
        image, boxes = shapes_image(rng, size, size, count=rng.randint(1, 2))
        file_name = f"{prefix}{image_id:04d}.jpg"
        files[file_name] = encode(image, "JPEG")
        document["images"].append({"id": image_id, "file_name": file_name, "width": size, "height": size})
        for box in boxes:
            w, h = box.x_max - box.x_min, box.y_max - box.y_min
            document["annotations"].append(
                {"id": annotation_id, "image_id": image_id, "category_id": category_id[box.label],
                 "bbox": [box.x_min, box.y_min, w, h], "area": w * h, "iscrowd": 0}
            )
            annotation_id += 1
    return document, files


def coco_zip(images: int = 12, size: int = 96, seed: int = 0) -> bytes:
    """A zip holding ``annotations.json`` and the images it names."""
    document, files = coco_dataset(images, size, seed)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("annotations.json", json.dumps(document))
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()
