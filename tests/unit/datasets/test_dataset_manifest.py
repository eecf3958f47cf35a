from __future__ import annotations

import hashlib

import pytest

from sightline.datasets.manifest import assign_splits, build_manifest
from sightline.errors import BadRequest, NotFound
from sightline_local import synthetic
from support import png


def _without_timestamp(manifest: dict) -> dict:
    return {key: value for key, value in manifest.items() if key != "created_at"}


def _fake_items(label_counts: dict[str, int], offset: int = 0) -> list[dict]:
    items, n = [], offset
    for label, count in label_counts.items():
        for _ in range(count):
            items.append({"id": hashlib.sha256(str(n).encode()).hexdigest(), "label": label})
            n += 1
    return items


def test_classification_manifest_shape_and_deterministic_split(datasets):
    datasets.register("datasets/shapes/train.zip", synthetic.classification_zip(per_class=10))

    first = build_manifest(["shapes"], "classification", 0.2)
    second = build_manifest(["shapes"], "classification", 0.2)

    assert _without_timestamp(first) == _without_timestamp(second)
    assert first["format"] == "sightline.manifest/v1"
    assert first["task"] == "classification"
    assert first["datasets"] == ["shapes"]
    assert first["classes"] == ["circle", "square"]
    assert first["created_at"].endswith("Z")
    assert len(first["items"]) == 20
    item = first["items"][0]
    assert set(item) == {"id", "image", "width", "height", "split", "label"}
    assert item["image"] == {"bucket": datasets.resources.artifact_bucket, "key": f"images/{item['id'][:2]}/{item['id']}.png"}
    for label in first["classes"]:
        splits = {entry["split"] for entry in first["items"] if entry["label"] == label}
        assert splits == {"train", "validation"}


def test_detection_manifest_carries_boxes(datasets):
    datasets.register("datasets/det/coco.zip", synthetic.coco_zip(images=20, size=64, seed=3))

    manifest = build_manifest(["det"], "detection", 0.25)

    assert manifest["classes"] == ["circle", "square"]
    assert all("boxes" in item and "label" not in item for item in manifest["items"])
    box = manifest["items"][0]["boxes"][0]
    assert set(box) == {"label", "x_min", "y_min", "x_max", "y_max"}
    assert {item["split"] for item in manifest["items"]} == {"train", "validation"}


def test_items_are_deduplicated_by_image_across_datasets(datasets):
    archive = synthetic.classification_zip(per_class=5)
    datasets.register("datasets/a/train.zip", archive)
    datasets.register("datasets/b/copy.zip", archive)
    datasets.register("datasets/b/circle/new.png", png(77))

    manifest = build_manifest(["a", "b"], "classification", 0.2)

    ids = [item["id"] for item in manifest["items"]]
    assert len(ids) == len(set(ids)) == 11
    assert manifest["datasets"] == ["a", "b"]


def test_split_is_deterministic_and_independent_of_order():
    items = _fake_items({"cat": 30, "dog": 30})

    splits = assign_splits(items, 0.2)

    # A re-registration lists the same images in another order: the same split.
    assert splits == assign_splits(list(reversed(items)), 0.2)
    assert splits == assign_splits([dict(item) for item in items], 0.2)
    assert sum(split == "validation" for split in splits.values()) == 12


def _validated(items: list[dict], splits: dict[str, str], label: str) -> int:
    return sum(splits[item["id"]] == "validation" for item in items if item["label"] == label)


def test_split_is_stratified_in_proportion_to_each_class():
    items = _fake_items({"common": 200, "middling": 40, "small": 5, "tiny": 7})

    splits = assign_splits(items, 0.2)

    assert {label: _validated(items, splits, label) for label in ("common", "middling", "small", "tiny")} == {
        "common": 40, "middling": 8, "small": 1, "tiny": 1}
    grown = items + _fake_items({"common": 100, "small": 10}, offset=10_000)
    grown_splits = assign_splits(grown, 0.2)
    assert _validated(grown, grown_splits, "common") == 60
    assert _validated(grown, grown_splits, "small") == 3


def test_multilabel_items_are_stratified_by_their_rarest_class():
    items = [{"id": hashlib.sha256(f"m{n}".encode()).hexdigest(),
              "labels": ["person"] + (["dog"] if n < 10 else [])} for n in range(100)]

    splits = assign_splits(items, 0.2)

    dogs = [item for item in items if "dog" in item["labels"]]
    assert sum(splits[item["id"]] == "validation" for item in dogs) == 2
    assert sum(split == "validation" for split in splits.values()) == 20


def test_every_class_with_two_items_gets_one_validation_and_one_train():
    items = _fake_items({"rare": 2, "common": 40, "single": 1})

    for fraction in (0.01, 0.5, 0.99):
        splits = assign_splits(items, fraction)
        for label in ("rare", "common"):
            assert {splits[item["id"]] for item in items if item["label"] == label} == {"train", "validation"}


def test_unknown_dataset_is_not_found(datasets):
    datasets.register("datasets/known/cat/1.png", png(1))

    with pytest.raises(NotFound, match="missing"):
        build_manifest(["known", "missing"], "classification", 0.2)


def test_too_little_to_train_on_is_a_bad_request(datasets):
    datasets.register("datasets/one/cat/1.png", png(1))
    datasets.register("datasets/one/cat/2.png", png(2))
    datasets.register("datasets/det/coco.zip", synthetic.coco_zip(images=1, size=64, seed=4))

    with pytest.raises(BadRequest, match="at least 2 classes; one has only 'cat'"):
        build_manifest(["one"], "classification", 0.2)
    with pytest.raises(BadRequest, match="no detection data in one"):
        build_manifest(["one"], "detection", 0.2)
    with pytest.raises(BadRequest, match="too small to train detection: every class needs at least 5 images"):
        build_manifest(["det"], "detection", 0.2)
    with pytest.raises(BadRequest, match="validation_fraction"):
        build_manifest(["one"], "classification", 1.0)
    with pytest.raises(BadRequest, match="task must be one of"):
        build_manifest(["one"], "segmentation", 0.2)
    with pytest.raises(BadRequest, match="non-empty list"):
        build_manifest([], "classification", 0.2)
