from __future__ import annotations

import json
import re

import pytest
from training_helpers import colour_dataset

from sightline_training.errors import InvalidInput
from sightline_training.manifest import load_manifest, parse_manifest


@pytest.fixture
def document(make_dataset):
    def build(task: str = "detection") -> dict:
        dataset = make_dataset(task, count=6)
        for item in dataset.document["items"]:
            item["image"] = {"bucket": "artifacts", "key": f"images/{item['id'][:2]}/{item['id']}.png"}
        return dataset.document

    return build


def test_parses_bucket_and_key_into_s3_uris_and_1_based_label_ids(document):
    manifest = parse_manifest(document(), "s3://artifacts/manifests/m/v1/manifest.json")
    assert manifest.task == "detection"
    assert manifest.classes == ("circle", "square")
    first = manifest.items[0]
    assert first.image_uri == f"s3://artifacts/images/{first.id[:2]}/{first.id}.png"
    labels = {box.label_id for item in manifest.items for box in item.boxes}
    assert labels <= {1, 2}
    assert any(not item.boxes for item in manifest.items)  # negatives survive


def test_relative_uri_resolves_against_the_manifest_folder(document):
    raw = document("classification")
    raw["items"][0]["image"] = {"uri": "images/a.png"}
    manifest = parse_manifest(raw, "file:///data/set/manifest.json")
    assert manifest.items[0].image_uri == "file:///data/set/images/a.png"
    assert manifest.items[0].class_index in (0, 1)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(format="sightline.manifest/v0"), "manifest format must be"),
        (lambda d: d.update(task="segmentation"), "manifest task must be one of"),
        (lambda d: d.update(classes=["square", "circle"]), "sorted and unique"),
        (lambda d: d.update(items={}), "items must be a list"),
        (lambda d: d["items"][0].update(split="test"), "split must be one of"),
        (lambda d: d["items"][0].update(image={"bucket": "b"}), "image must be"),
        (lambda d: d["items"][1]["boxes"][0].update(label="triangle"), "is not one of the manifest classes"),
        (lambda d: d["items"][1]["boxes"][0].update(x_max=-1), "has no area"),
        (lambda d: d["items"][1]["boxes"][0].update(y_min="1"), "must be a finite number"),
    ],
)
def test_bad_documents_are_rejected_with_the_reason(document, edit, message):
    raw = document()
    edit(raw)
    with pytest.raises(InvalidInput, match=message):
        parse_manifest(raw, "s3://artifacts/manifest.json")


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(InvalidInput, match="manifest not found"):
        load_manifest(str(tmp_path / "absent.json"))
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(InvalidInput, match="not valid JSON"):
        load_manifest(str(tmp_path / "broken.json"))
    (tmp_path / "list.json").write_text(json.dumps([]))
    with pytest.raises(InvalidInput, match="must be a JSON object"):
        load_manifest((tmp_path / "list.json").as_uri())


@pytest.fixture
def colours():
    def build(task: str) -> dict:
        document = colour_dataset(task, repeats=2).document
        for item in document["items"]:
            item["image"] = {"bucket": "artifacts", "key": f"images/{item['id']}.png"}  # not read while parsing
        return document

    return build


def test_multilabel_items_carry_sorted_label_lists_and_an_empty_list_is_a_negative(colours):
    raw = colours("multilabel")
    manifest = parse_manifest(raw, "file:///data/manifest.json")
    assert manifest.task == "multilabel" and manifest.classes == ("blue", "green", "red")
    by_labels = {tuple(item["labels"]): parsed for item, parsed in zip(raw["items"], manifest.items)}
    assert by_labels[("blue", "red")].class_indices == (0, 2)
    assert by_labels[()].class_indices == ()  # an image of none of the classes
    assert all(item.class_index is None and item.boxes == () for item in manifest.items)
    assert not manifest.has_negatives  # only a classifier grows a background output


def test_a_null_classification_label_is_a_negative(colours):
    manifest = parse_manifest(colours("classification"), "file:///data/manifest.json")
    negatives = [item for item in manifest.items if item.class_index is None]
    assert len(negatives) == 2 and manifest.has_negatives
    assert manifest.classes == ("blue", "green", "red")  # classes never include the null label


def _first(document: dict, **fields) -> dict:
    document["items"][0].update(fields)
    return document


@pytest.mark.parametrize(
    ("task", "edit", "message"),
    [
        ("multilabel", lambda d: _first(d, labels="red"), 'multilabel items carry "labels", a list'),
        ("multilabel", lambda d: d["items"][0].pop("labels"), 'multilabel items carry "labels"'),
        ("multilabel", lambda d: _first(d, labels=["purple"]), "label 'purple' is not one of the manifest classes"),
        ("multilabel", lambda d: _first(d, labels=[None]), "label None is not one of the manifest classes"),
        ("multilabel", lambda d: _first(d, labels=["red", "blue"]), "labels must be sorted and unique"),
        ("multilabel", lambda d: _first(d, labels=["red", "red"]), "labels must be sorted and unique"),
        ("multilabel", lambda d: _first(d, label=None), '"label" belongs to classification items, not to a '
                                                        "multilabel manifest"),
        ("classification", lambda d: _first(d, labels=["red"]), '"labels" belongs to multilabel items, not to a '
                                                                "classification manifest"),
        ("classification", lambda d: d["items"][0].pop("label"), 'classification items carry "label" (null for an '
                                                                 "image of no class)"),
        ("classification", lambda d: _first(d, label=""), "label '' is not one of the manifest classes"),
        ("classification", lambda d: d.update(classes=["blue", "green", "red", None]), "non-empty strings"),
        ("detection", lambda d: _first(d, label=None), '"label" belongs to classification items, not to a '
                                                       "detection manifest"),
        ("detection", lambda d: _first(d, labels=[]), '"labels" belongs to multilabel items'),
    ],
)
def test_label_fields_of_the_wrong_kind_or_task_name_the_item(colours, document, task, edit, message):
    raw = document() if task == "detection" else colours(task)
    edit(raw)
    with pytest.raises(InvalidInput, match=re.escape(message)) as error:
        parse_manifest(raw, "s3://artifacts/manifest.json")
    if "classes" not in message and "strings" not in message:
        assert str(error.value).startswith(f"manifest item {raw['items'][0]['id']}: ")
