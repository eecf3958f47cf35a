"""IBM Watson Visual Recognition's training archives: ``<class>_positive_examples.zip`` holds examples of one
class, ``negative_examples.zip`` images of none (Watson's ``create_classifier`` took them as form fields of
these names). Uploading another ``<class>_positive_examples.zip`` later adds a class or examples, as Watson's
``update_classifier`` did. The class comes from the archive's name, whatever folders are inside it.
"""
from __future__ import annotations

import re

from sightline.datasets.formats.base import basename, clean_label

NAME = "watson"
_ARCHIVE = re.compile(r"(?P<stem>.+?)(?:\.zip|\.tar|\.tar\.gz|\.tgz)", re.IGNORECASE)
POSITIVE_SUFFIX = "_positive_examples"
NEGATIVE_STEM = "negative_examples"


def archive_role(key: str) -> tuple[str, str | None] | None:
    """("positive", class) or ("negative", None) for a Watson training archive at ``key``; None otherwise."""
    match = _ARCHIVE.fullmatch(basename(key))
    if match is None:
        return None
    stem = match.group("stem")
    if stem.lower() == NEGATIVE_STEM:
        return "negative", None
    if stem.lower().endswith(POSITIVE_SUFFIX):
        label = clean_label(stem[: -len(POSITIVE_SUFFIX)])
        return ("positive", label) if label else None
    return None
