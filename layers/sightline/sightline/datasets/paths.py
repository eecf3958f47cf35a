"""Dataset names and object keys: which dataset an object belongs to and what kind of file it is."""
from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from enum import Enum

from sightline.datasets.formats import ANNOTATION_SUFFIXES

DATASETS_PREFIX = "datasets/"
# DynamoDB sort keys hold 1024 bytes and the source item's is "SOURCE#<key>".
MAX_KEY_BYTES = 1000
_DATASET_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
ARCHIVE_SUFFIXES = frozenset({".zip", ".tar", ".tgz"})
COMPRESSED_TAR_ENDINGS = (".tar.gz",)

# Files operating systems and tools leave behind; registering them or reporting them would only be noise.
_HARMLESS_NAMES = frozenset({".ds_store", "thumbs.db", "desktop.ini", ".gitkeep", ".keep", ".gitignore"})
_HARMLESS_FOLDERS = frozenset({"__macosx", ".git", ".ipynb_checkpoints"})


class FileKind(str, Enum):
    IMAGE = "image"
    ARCHIVE = "archive"
    ANNOTATION = "annotation"
    SKIP = "skip"  # harmless (folder markers, .DS_Store, __MACOSX/): silently ignored
    UNSUPPORTED = "unsupported"


class InvalidKey(ValueError):
    """The object is outside a valid ``datasets/<name>/`` folder; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class DatasetObject:
    key: str
    dataset: str
    relative_path: str  # the key below ``datasets/<name>/``


def is_valid_dataset_name(name: str) -> bool:
    # Only dots would read as a relative path ("." / "..") in URLs and keys.
    return bool(_DATASET_NAME.fullmatch(name)) and set(name) != {"."}


def dataset_name_problem(name: str) -> str | None:
    if is_valid_dataset_name(name):
        return None
    return f"invalid dataset name {name!r}: use 1 to 64 letters, digits, '-', '_' or '.'"


def parse_object_key(key: str) -> DatasetObject:
    """The dataset an uploaded object belongs to; raises ``InvalidKey`` for keys outside a dataset folder."""
    if len(key.encode()) > MAX_KEY_BYTES:
        raise InvalidKey(f"object key is longer than {MAX_KEY_BYTES} bytes")
    if not key.startswith(DATASETS_PREFIX):
        raise InvalidKey(f"object is outside {DATASETS_PREFIX}: upload to datasets/<name>/<file>")
    name, separator, relative_path = key[len(DATASETS_PREFIX):].partition("/")
    if not separator:
        raise InvalidKey("object is not inside a dataset folder: upload to datasets/<name>/<file>")
    problem = dataset_name_problem(name)
    if problem:
        raise InvalidKey(problem)
    if any(part in (".", "..") for part in relative_path.split("/")):
        raise InvalidKey("object key has '.' or '..' path segments")
    return DatasetObject(key=key, dataset=name, relative_path=relative_path)


def path_parts(path: str) -> list[str]:
    return [part for part in path.split("/") if part]


def suffix(path: str) -> str:
    return posixpath.splitext(posixpath.basename(path))[1].lower()


def classify_file(path: str) -> FileKind:
    """What kind of file ``path`` (an object key below the dataset, or an archive member) names."""
    if not path or path.endswith("/"):
        return FileKind.SKIP  # "folder" placeholder objects the S3 console creates
    parts = path_parts(path)
    if any(part.lower() in _HARMLESS_FOLDERS for part in parts[:-1]):
        return FileKind.SKIP
    name = parts[-1]
    # Dot files are hidden by convention (AppleDouble "._x.jpg" files are not images despite their name).
    if name.lower() in _HARMLESS_NAMES or name.startswith("."):
        return FileKind.SKIP
    extension = suffix(name)
    if extension in IMAGE_SUFFIXES:
        return FileKind.IMAGE
    if extension in ARCHIVE_SUFFIXES or name.lower().endswith(COMPRESSED_TAR_ENDINGS):
        return FileKind.ARCHIVE
    if extension in ANNOTATION_SUFFIXES:
        return FileKind.ANNOTATION
    return FileKind.UNSUPPORTED


def unsupported_reason(path: str) -> str:
    extension = suffix(path)
    return f"unsupported file type {extension}" if extension else "unsupported file type (no extension)"


def resolve_relative(folder: str, file_name: str) -> str:
    """``file_name`` (as an annotation file writes it) relative to ``folder``, normalised."""
    joined = posixpath.join(folder, file_name.replace("\\", "/"))
    normalised = posixpath.normpath(joined) if joined else ""
    return "" if normalised == "." else normalised
