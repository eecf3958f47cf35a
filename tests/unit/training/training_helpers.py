"""What the training tests share besides fixtures: generated datasets written as manifests, and the job run
through the entrypoint Batch runs. The fixtures built on these are in this folder's ``conftest.py``."""
from __future__ import annotations

import hashlib
import itertools
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from sightline_local import synthetic
from sightline_training.__main__ import main


@dataclass
class SyntheticDataset:
    """A manifest document and the encoded images its items name (``files[item id]``)."""

    document: dict
    files: dict[str, bytes]


def _dataset(task: str, entries: Sequence[tuple[Image.Image, str, dict]], classes: Sequence[str],
             name: str) -> SyntheticDataset:
    """Items of ``(image, split, label fields)``, each image encoded and named by its content's hash."""
    items, files = [], {}
    for image, split, fields in entries:
        data = synthetic.encode(image)
        item_id = hashlib.sha256(data).hexdigest()
        files[item_id] = data
        items.append({"id": item_id, "image": {}, "width": image.width, "height": image.height, "split": split,
                      **fields})
    document = {"format": "sightline.manifest/v1", "task": task, "datasets": [name], "classes": sorted(classes),
                "created_at": "2026-11-22T05:00:00Z", "items": items}
    return SyntheticDataset(document, files)


def synthetic_dataset(task: str, count: int = 12, size: int = 64, seed: int = 0) -> SyntheticDataset:
    """Shapes images; every fourth pair is validation, so both classes (and some boxes) are in each split.

    Detection items cycle through 0, 1 and 2 shapes, so negatives are part of it.
    """
    rng = random.Random(seed)
    entries = []
    for n in range(count):
        split = "validation" if (n // 2) % 4 == 0 else "train"
        if task == "classification":
            label = synthetic.SHAPES[n % 2]
            image, _ = synthetic.shapes_image(rng, size, size, count=1, labels=(label,))
            entries.append((image, split, {"label": label}))
        else:
            image, boxes = synthetic.shapes_image(rng, size, size, count=n % 3)
            entries.append((image, split, {"boxes": [
                {"label": b.label, "x_min": b.x_min, "y_min": b.y_min, "x_max": b.x_max, "y_max": b.y_max}
                for b in boxes]}))
    return _dataset(task, entries, synthetic.SHAPES, "shapes")


# Colour classes: each is one channel, bright when the class is present and dark otherwise, so red and green
# together are yellow and an image of none is near black. Separable enough to train in seconds from scratch.
PRIMARIES = {"red": 0, "green": 1, "blue": 2}


def colour_image(present: Sequence[str], rng: random.Random, size: int = 16) -> Image.Image:
    colour = [rng.randint(10, 60) for _ in PRIMARIES]
    for name in present:
        colour[PRIMARIES[name]] = rng.randint(190, 250)
    return Image.new("RGB", (size, size), tuple(colour))


def colour_dataset(task: str, repeats: int = 5, seed: int = 0) -> SyntheticDataset:
    """Solid colours: for multilabel every combination of the three classes including none (``labels``), for
    classification each class and a negative (``"label": null``); the first of ``repeats`` is validation."""
    rng = random.Random(seed)
    names = sorted(PRIMARIES)
    if task == "multilabel":
        combinations = [c for r in range(len(names) + 1) for c in itertools.combinations(names, r)]
    else:
        combinations = [(name,) for name in names] + [()]
    entries = []
    for repeat in range(repeats):
        for present in combinations:
            fields = ({"labels": list(present)} if task == "multilabel"
                      else {"label": present[0] if present else None})
            entries.append((colour_image(present, rng), "validation" if repeat == 0 else "train", fields))
    return _dataset(task, entries, names, "colours")


def write_local(dataset: SyntheticDataset, root: Path, file_uris: bool = False, edit=None) -> Path:
    """The dataset's images under ``root/images`` and its manifest at ``root/manifest.json`` (returned). Images
    are referenced by ``uri``: a path relative to the manifest, or ``file://`` URIs when ``file_uris``."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    for item in dataset.document["items"]:
        path = root / "images" / f"{item['id']}.png"
        path.write_bytes(dataset.files[item["id"]])
        item["image"] = {"uri": path.as_uri() if file_uris else f"images/{path.name}"}
    if edit is not None:
        edit(dataset.document)
    manifest = root / "manifest.json"
    manifest.write_text(json.dumps(dataset.document))
    return manifest


def run(manifest: Path | str, tmp_path: Path, template: str, params: dict, name: str = "job",
        extra: list[str] | None = None) -> int:
    """The training job's exit status; its output, checkpoints and work folder under ``tmp_path/name``."""
    return main([
        "--manifest", str(manifest), "--output", str(tmp_path / name / "out"),
        "--checkpoint", str(tmp_path / name / "checkpoints"), "--template", template,
        "--params", json.dumps(params), "--work-dir", str(tmp_path / name / "work"), "--workers", "0",
        *(extra or []),
    ])
