"""Datasets as the tools people use export them: the same generated photos and boxes written as Pascal VOC,
YOLO, CSV, Ground Truth manifests, Watson archives, and packed in zips or tars."""
from __future__ import annotations

import io
import json
import random
import tarfile
import zipfile
from dataclasses import dataclass

from sightline_local import synthetic

LABELS = ("circle", "square")


@dataclass(frozen=True)
class Photo:
    stem: str
    jpeg: bytes
    width: int
    height: int
    boxes: list  # synthetic.Box: pixels, x_max/y_max exclusive


def photos(count: int = 4, width: int = 96, height: int = 72, seed: int = 0) -> list[Photo]:
    rng = random.Random(seed)
    made = []
    for number in range(count):
        image, boxes = synthetic.shapes_image(rng, width, height, count=2, labels=LABELS)
        made.append(Photo(f"{number:06d}", synthetic.encode(image, "JPEG"), width, height, boxes))
    return made


def expected_boxes(photo: Photo) -> list[dict]:
    return sorted(({"label": b.label, "x_min": float(b.x_min), "y_min": float(b.y_min), "x_max": float(b.x_max),
                    "y_max": float(b.y_max)} for b in photo.boxes), key=lambda box: (box["x_min"], box["y_min"]))


def zip_of(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def tar_of(members: dict[str, bytes], *, gzip: bool = False) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz" if gzip else "w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def voc_xml(photo: Photo, *, filename: bool = True) -> bytes:
    # VOC coordinates are 1-based and inclusive.
    objects = "".join(
        f"<object><name>{b.label}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>"
        f"<bndbox><xmin>{b.x_min + 1}</xmin><ymin>{b.y_min + 1}</ymin><xmax>{b.x_max}</xmax><ymax>{b.y_max}</ymax>"
        "</bndbox></object>"
        for b in photo.boxes
    )
    name = f"<filename>{photo.stem}.jpg</filename>" if filename else ""
    return (f"<annotation><folder>VOC2012</folder>{name}<source><database>Sightline</database></source>"
            f"<size><width>{photo.width}</width><height>{photo.height}</height><depth>3</depth></size>"
            f"<segmented>0</segmented>{objects}</annotation>").encode()


def voc_members(items: list[Photo]) -> dict[str, bytes]:
    members = {}
    for photo in items:
        members[f"VOCdevkit/VOC2012/Annotations/{photo.stem}.xml"] = voc_xml(photo)
        members[f"VOCdevkit/VOC2012/JPEGImages/{photo.stem}.jpg"] = photo.jpeg
    members["VOCdevkit/VOC2012/ImageSets/Main/train.txt"] = "\n".join(p.stem for p in items).encode()
    return members


def yolo_line(photo: Photo, box) -> str:
    cx, cy = (box.x_min + box.x_max) / 2 / photo.width, (box.y_min + box.y_max) / 2 / photo.height
    w, h = (box.x_max - box.x_min) / photo.width, (box.y_max - box.y_min) / photo.height
    return f"{LABELS.index(box.label)} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}"


def yolo_members(items: list[Photo], *, names: str = "data.yaml", split: str = "train") -> dict[str, bytes]:
    members = {}
    for photo in items:
        members[f"images/{split}/{photo.stem}.jpg"] = photo.jpeg
        members[f"labels/{split}/{photo.stem}.txt"] = "\n".join(yolo_line(photo, b) for b in photo.boxes).encode()
    if names == "data.yaml":
        members["data.yaml"] = ("path: .\ntrain: images/train\nval: images/train\n"
                                "names:\n  0: circle\n  1: square\n").encode()
    elif names == "classes.txt":
        members["classes.txt"] = "circle\nsquare\n".encode()
    return members


def boxes_csv(items: list[Photo], *, header: bool = True, folder: str = "images/") -> bytes:
    rows = ["image_path,xmin,ymin,xmax,ymax,label"] if header else []
    rows += [f"{folder}{p.stem}.jpg,{b.x_min},{b.y_min},{b.x_max},{b.y_max},{b.label}" for p in items for b in p.boxes]
    return ("\n".join(rows) + "\n").encode()


def groundtruth_manifest(items: list[Photo], bucket: str, prefix: str) -> bytes:
    lines = []
    for photo in items:
        annotations = [{"class_id": LABELS.index(b.label), "left": b.x_min, "top": b.y_min,
                        "width": b.x_max - b.x_min, "height": b.y_max - b.y_min} for b in photo.boxes]
        lines.append(json.dumps({
            "source-ref": f"s3://{bucket}/{prefix}{photo.stem}.jpg",
            "bounding-box": {"image_size": [{"width": photo.width, "height": photo.height, "depth": 3}],
                             "annotations": annotations},
            "bounding-box-metadata": {"objects": [{"confidence": 1}] * len(annotations),
                                      "class-map": {str(i): name for i, name in enumerate(LABELS)},
                                      "type": "groundtruth/object-detection", "human-annotated": "yes",
                                      "creation-date": "2026-11-01T00:00:00", "job-name": "labeling-job/boxes"},
        }))
    return ("\n".join(lines) + "\n").encode()


def single_shape_jpegs(label: str, count: int, seed: int) -> dict[str, bytes]:
    rng = random.Random(seed)
    made = {}
    for number in range(count):
        image, _ = synthetic.shapes_image(rng, 64, 64, count=1, labels=(label,))
        made[f"{label}_{number}.jpg"] = synthetic.encode(image, "JPEG")
    return made


def background_jpegs(count: int, seed: int) -> dict[str, bytes]:
    """Photos of no class: Watson's negative examples."""
    rng = random.Random(seed)
    made = {}
    for number in range(count):
        image, _ = synthetic.shapes_image(rng, 64, 64, count=0)
        made[f"background_{number}.jpg"] = synthetic.encode(image, "JPEG")
    return made
