"""Builders and lookups shared by the dataset tests."""
from __future__ import annotations

import io
import json
import random
import zipfile
from pathlib import Path

from PIL import Image

from sightline_local import synthetic


def png(seed: int = 0, size: int = 32, label: str = "circle") -> bytes:
    """A small valid PNG; different seeds give different content (and so a different sha256)."""
    image, _ = synthetic.shapes_image(random.Random(seed), size, size, count=1, labels=(label,))
    return synthetic.encode(image)


def solid_image(fmt: str = "PNG", size: tuple[int, int] = (8, 8), colour: tuple[int, int, int] = (10, 200, 30), **save) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format=fmt, **save)
    return buffer.getvalue()


def make_zip(members: dict[str, bytes], *, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def reasons_for(dataset: dict, key: str) -> list[str]:
    return [issue["reason"] for issue in dataset["issues"] if issue["key"] == key]


def issue_keys(dataset: dict) -> set[str]:
    return {issue["key"] for issue in dataset["issues"]}


EVENTS = Path(__file__).resolve().parents[2] / "events"


def load_event(name: str) -> dict:
    """A JSON event fixture from ``tests/events`` (as ``tests/conftest.load_event``; two modules named conftest
    cannot both be imported by name)."""
    return json.loads((EVENTS / name).read_text())
