"""The class-folder layout: an image's label is the name of the folder it sits in.

``<class>/<image>`` in a zip or ``datasets/<name>/<class>/<image>`` in the bucket; using the immediate parent
also tolerates one (or more) wrapping folders, e.g. ``pets/cat/1.jpg`` or ``train/cat/1.jpg``.
"""
from __future__ import annotations

from sightline.datasets.paths import path_parts

MAX_LABEL_CHARS = 128


def class_label(path: str) -> str | None:
    """The label of an image at ``path`` (relative to the dataset folder or the archive root), if it has one."""
    parts = path_parts(path)
    if len(parts) < 2:
        return None
    label = parts[-2].strip()
    if not label or len(label) > MAX_LABEL_CHARS:
        return None
    return label
