from __future__ import annotations

import json

import pytest

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
