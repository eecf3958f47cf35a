"""Builders and lookups shared by the dataset tests (``png`` and ``make_zip`` are in ``tests/support.py``)."""
from __future__ import annotations

import io

from PIL import Image


def solid_image(fmt: str = "PNG", size: tuple[int, int] = (8, 8), colour: tuple[int, int, int] = (10, 200, 30), **save) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format=fmt, **save)
    return buffer.getvalue()


def reasons_for(dataset: dict, key: str) -> list[str]:
    return [issue["reason"] for issue in dataset["issues"] if issue["key"] == key]


def issue_keys(dataset: dict) -> set[str]:
    return {issue["key"] for issue in dataset["issues"]}
