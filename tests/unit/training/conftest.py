from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from sightline_local import synthetic


@pytest.fixture(autouse=True, scope="session")
def _two_threads():
    # The CI machine has 2 cores; more threads only contend.
    torch.set_num_threads(2)


@dataclass
class SyntheticDataset:
    """A manifest document and the encoded images its items name (``files[item id]``)."""

    document: dict
    files: dict[str, bytes]


def synthetic_dataset(task: str, count: int = 12, size: int = 64, seed: int = 0) -> SyntheticDataset:
    """Shapes images; every fourth pair is validation, so both classes (and some boxes) are in each split.

    Detection items cycle through 0, 1 and 2 shapes, so negatives are part of it.
    """
    rng = random.Random(seed)
    items, files = [], {}
    for n in range(count):
        if task == "classification":
            label = synthetic.SHAPES[n % 2]
            image, _ = synthetic.shapes_image(rng, size, size, count=1, labels=(label,))
        else:
            image, boxes = synthetic.shapes_image(rng, size, size, count=n % 3)
        data = synthetic.encode(image)
        item_id = hashlib.sha256(data).hexdigest()
        files[item_id] = data
        item = {"id": item_id, "image": {}, "width": size, "height": size,
                "split": "validation" if (n // 2) % 4 == 0 else "train"}
        if task == "classification":
            item["label"] = label
        else:
            item["boxes"] = [{"label": b.label, "x_min": b.x_min, "y_min": b.y_min, "x_max": b.x_max,
                              "y_max": b.y_max} for b in boxes]
        items.append(item)
    document = {"format": "sightline.manifest/v1", "task": task, "datasets": ["shapes"],
                "classes": sorted(synthetic.SHAPES), "created_at": "2026-11-22T05:00:00Z", "items": items}
    return SyntheticDataset(document, files)


@pytest.fixture
def make_dataset() -> Callable[..., SyntheticDataset]:
    return synthetic_dataset


@pytest.fixture
def local_manifest(tmp_path: Path) -> Callable[..., Path]:
    """Write a synthetic dataset under ``tmp_path/dataset``; the manifest's path. Images are referenced by
    ``uri``: a path relative to the manifest, or ``file://`` URIs when ``file_uris``."""

    def write(task: str, count: int = 12, size: int = 64, file_uris: bool = False, edit=None) -> Path:
        dataset = synthetic_dataset(task, count, size)
        root = tmp_path / "dataset"
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

    return write
