"""Training snapshots: the ``sightline.manifest/v1`` document a model version trains on.

The train/validation split is a pure function of the item ids, their classes and the fraction: the same data always
splits the same way, stratified so that every class validates on its share of its images.
"""
from __future__ import annotations

import hashlib
import math
from typing import Any

from sightline import aws
from sightline.contract import CLASSIFICATION, DETECTION, MANIFEST_FORMAT, TASKS
from sightline.datasets import store
from sightline.datasets.catalog import MIN_IMAGES_PER_CLASS, images_per_class, item_labels
from sightline.errors import BadRequest

TRAIN = "train"
VALIDATION = "validation"


def split_position(item_id: str) -> float:
    """Where an item falls in [0, 1): below the validation fraction means validation."""
    digest = hashlib.sha256(f"sightline-split:{item_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def validation_quota(count: int, validation_fraction: float) -> int:
    """How many of ``count`` items of one stratum validate: the fraction rounded half up, and with two or more
    items at least one in each split (so a class of 5 images at 0.2 validates on 1)."""
    quota = math.floor(count * validation_fraction + 0.5)
    return min(max(quota, 1), count - 1) if count >= 2 else 0


def assign_splits(items: list[dict[str, Any]], validation_fraction: float) -> dict[str, str]:
    """``{item id: "train" | "validation"}``, stratified by class and deterministic.

    Each item belongs to one stratum: its rarest class (fewest items; ties by name), or "no class" for a
    negative. Within a stratum the items are ordered by their hash position and the first
    ``validation_quota`` validate, so every class is validated in proportion and the same items always split
    the same way, whatever their order. Adding images can move the few items at a stratum's boundary. A class
    of two or more items still short of a validation or training item afterwards (a multi-label or detection
    class that is never an item's rarest) gets one moved across.
    """
    position = {item["id"]: split_position(item["id"]) for item in items}
    labels = {item["id"]: item_labels(item) for item in items}
    members: dict[str, list[str]] = {}
    for item_id in sorted(position, key=position.__getitem__):
        for label in labels[item_id]:
            members.setdefault(label, []).append(item_id)
    strata: dict[str | None, list[str]] = {}
    for item_id in sorted(position, key=position.__getitem__):
        rarest = min(labels[item_id], key=lambda label: (len(members[label]), label), default=None)
        strata.setdefault(rarest, []).append(item_id)
    validation = {item_id for ids in strata.values() for item_id in ids[:validation_quota(len(ids), validation_fraction)]}

    def validated(label: str, without: str | None = None) -> bool:
        return any(member in validation and member != without for member in members[label])

    for label in sorted(members):
        ids = members[label]
        if len(ids) >= 2 and not validated(label):
            validation.add(ids[0])  # the one closest to the validation side
    for label in sorted(members):
        ids = members[label]
        if len(ids) >= 2 and all(member in validation for member in ids):
            # Move the one closest to the train side, unless that leaves another class unvalidated (multi-label).
            for candidate in reversed(ids):
                others = [other for other in labels[candidate] if other != label and len(members[other]) >= 2]
                if all(validated(other, without=candidate) for other in others):
                    validation.discard(candidate)
                    break
    ordered = sorted(position, key=position.__getitem__)
    if len(ordered) >= 2 and not validation:
        validation.add(ordered[0])
    if len(ordered) >= 2 and len(validation) == len(ordered):
        validation.discard(ordered[-1])
    return {item_id: VALIDATION if item_id in validation else TRAIN for item_id in position}


def _dataset_names(datasets: list[str]) -> list[str]:
    if not isinstance(datasets, list) or not datasets or not all(isinstance(name, str) and name for name in datasets):
        raise BadRequest("datasets must be a non-empty list of dataset names", code="invalid_datasets")
    return list(dict.fromkeys(datasets))


def check_enough_examples(items: list[dict[str, Any]], task: str, listed: str) -> None:
    """``BadRequest`` (``dataset_too_small``) naming every class with fewer than ``MIN_IMAGES_PER_CLASS`` images:
    reported before a training job is started, so no GPU time goes on a run that cannot learn."""
    small = [f"{label!r} has {count}" for label, count in images_per_class(items).items()
             if count < MIN_IMAGES_PER_CLASS]
    if small:
        shown = ", ".join(small[:10]) + (f" and {len(small) - 10} more" if len(small) > 10 else "")
        raise BadRequest(f"{listed} is too small to train {task}: every class needs at least {MIN_IMAGES_PER_CLASS} "
                         f"images; {shown}", code="dataset_too_small")


def build_manifest(datasets: list[str], task: str, validation_fraction: float) -> dict[str, Any]:
    """The manifest for training ``task`` on ``datasets``.

    Raises ``NotFound`` for an unknown dataset, ``BadRequest`` when there is nothing (or too little) to train on.
    """
    names = _dataset_names(datasets)
    if task not in TASKS:
        raise BadRequest(f"task must be one of {', '.join(TASKS)}, got {task!r}", code="invalid_task")
    if isinstance(validation_fraction, bool) or not isinstance(validation_fraction, (int, float)) or not 0 < validation_fraction < 1:
        raise BadRequest(f"validation_fraction must be between 0 and 1, got {validation_fraction!r}", code="invalid_params")
    items = store.dataset_items(names, task)
    listed = ", ".join(names)
    if not items:
        what = "class-folder images" if task == CLASSIFICATION else "annotated images"
        raise BadRequest(f"no {task} data in {listed}: the datasets have no {what}", code="no_training_data")
    classes = sorted({label for item in items for label in item_labels(item)})
    if task == CLASSIFICATION and len(classes) < 2:
        found = f"only {classes[0]!r}" if classes else "none"
        raise BadRequest(f"classification needs at least 2 classes; {listed} has {found}", code="too_few_classes")
    if task == DETECTION and not classes:
        raise BadRequest(f"no boxes in {listed}: detection needs annotated objects", code="no_training_data")
    check_enough_examples(items, task, listed)
    splits = assign_splits(items, float(validation_fraction))
    if VALIDATION not in splits.values() or TRAIN not in splits.values():
        raise BadRequest(
            f"{listed} has {len(items)} {task} image(s): at least 2 are needed, one to train and one to validate",
            code="too_few_images",
        )
    return _manifest(names, task, classes, items, splits)


def _manifest(names: list[str], task: str, classes: list[str], items: list[dict[str, Any]],
              splits: dict[str, str]) -> dict[str, Any]:
    manifest_items = []
    for item in items:
        entry = {key: item[key] for key in ("id", "image", "width", "height")}
        entry["split"] = splits[item["id"]]
        for field in ("label", "labels", "boxes"):  # whichever the task's items carry
            if field in item:
                entry[field] = item[field]
        manifest_items.append(entry)
    return {
        "format": MANIFEST_FORMAT,
        "task": task,
        "datasets": names,
        "classes": classes,
        "created_at": aws.utc_now(),
        "items": manifest_items,
    }


def build_evaluation_manifest(dataset: str, task: str) -> dict[str, Any]:
    """Every ``task`` item of ``dataset`` in the training manifest's format, for an evaluation: no size rules (a
    class of one image is measured too), and every item is in the validation split (all of them are scored).

    Raises ``BadRequest`` (``no_evaluation_data``) when the dataset has no ``task`` data at all.
    """
    names = _dataset_names([dataset])
    items = store.dataset_items(names, task)
    if not items:
        raise BadRequest(f"no {task} data in {dataset} to evaluate on", code="no_evaluation_data")
    classes = sorted({label for item in items for label in item_labels(item)})
    return _manifest(names, task, classes, items, {item["id"]: VALIDATION for item in items})
