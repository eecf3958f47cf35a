from __future__ import annotations

import copy

from sightline.datasets import store
from sightline.datasets.formats.base import Box, BoxRejected, fit_box
from sightline.datasets.formats.coco import parse_coco
from sightline.datasets.issues import IssueLog
from sightline_local import synthetic
from dataset_helpers import reasons_for, solid_image
from support import make_zip


def _small_coco():
    return synthetic.coco_dataset(images=3, size=64, seed=1)


def _register_images(datasets, files: dict[str, bytes], folder: str = "datasets/det/") -> None:
    for name, data in files.items():
        datasets.register(folder + name, data)


def _expected_box_count(document: dict) -> int:
    return len(document["annotations"])


def test_coco_registered_after_its_images(datasets):
    document, files = _small_coco()
    _register_images(datasets, files)
    datasets.register_json("datasets/det/annotations.json", document)

    dataset = store.get_dataset("det")
    assert dataset["tasks"] == ["detection"]
    assert dataset["annotations"] == _expected_box_count(document)
    assert dataset["images"] == 3
    assert dataset["issues"] == []
    assert sum(dataset["classes"].values()) == dataset["annotations"]


def test_coco_registered_before_its_images_resolves_when_they_arrive(datasets):
    document, files = _small_coco()
    datasets.register_json("datasets/det/annotations.json", document)

    waiting = store.get_dataset("det")
    assert waiting["status"] == "invalid"  # terminal until the images arrive; the issues say which are missing
    assert waiting["issue_count"] == 3
    assert all("not found" in issue["reason"] for issue in waiting["issues"])
    assert any("image 1 (images/0001.jpg)" in issue["reason"] for issue in waiting["issues"])

    _register_images(datasets, files)

    dataset = store.get_dataset("det")
    assert dataset["issues"] == [] and dataset["issue_count"] == 0
    assert dataset["tasks"] == ["detection"]
    assert dataset["annotations"] == _expected_box_count(document)


def test_either_upload_order_gives_the_same_items(datasets):
    document, files = _small_coco()
    datasets.register_json("datasets/first/annotations.json", document)
    _register_images(datasets, files, "datasets/first/")
    _register_images(datasets, files, "datasets/second/")
    datasets.register_json("datasets/second/annotations.json", document)

    first = store.dataset_items(["first"], "detection")
    second = store.dataset_items(["second"], "detection")
    assert first == second
    assert store.get_dataset("first")["classes"] == store.get_dataset("second")["classes"]


def test_coco_inside_a_zip(datasets):
    outcome = datasets.register("datasets/det/coco.zip", synthetic.coco_zip(images=4, size=64, seed=2))

    assert outcome["status"] == "registered"
    dataset = store.get_dataset("det")
    assert dataset["tasks"] == ["detection"]
    assert dataset["images"] == 4
    assert dataset["issues"] == []
    items = store.dataset_items(["det"], "detection")
    assert len(items) == 4
    assert all(box["x_max"] > box["x_min"] and box["y_max"] > box["y_min"] for item in items for box in item["boxes"])


def test_coco_beside_a_zip_of_its_images(datasets):
    document, files = _small_coco()
    datasets.register("datasets/det/images.zip", make_zip({name.removeprefix("images/"): data for name, data in files.items()}))
    # "images/0001.jpg" is not where the unzipped file would sit ("datasets/det/0001.jpg"), but its file name is
    # unique in the dataset, which is how the image is found.
    datasets.register_json("datasets/det/annotations.json", document)

    dataset = store.get_dataset("det")
    assert dataset["tasks"] == ["detection"]
    assert dataset["issues"] == []


def test_unannotated_image_beside_annotated_ones_is_not_a_class(datasets):
    document, files = _small_coco()
    _register_images(datasets, files)
    datasets.register("datasets/det/images/extra.jpg", solid_image("JPEG", (64, 64)))
    datasets.register_json("datasets/det/annotations.json", document)

    dataset = store.get_dataset("det")
    assert "images" not in dataset["classes"]
    assert dataset["tasks"] == ["detection"]
    assert "no annotation file lists this image" in reasons_for(dataset, "datasets/det/images/extra.jpg")[0]


def test_bad_coco_entries_are_issues_naming_the_ids(datasets):
    document, files = _small_coco()
    bad = copy.deepcopy(document)
    bad["annotations"].append({"id": 900, "image_id": 1, "category_id": 77, "bbox": [1, 1, 5, 5]})
    bad["annotations"].append({"id": 901, "image_id": 1, "category_id": 1, "bbox": [10, 10, 0, 8]})
    bad["annotations"].append({"id": 902, "image_id": 42, "category_id": 1, "bbox": [1, 1, 5, 5]})
    bad["annotations"].append({"id": 903, "image_id": 2, "category_id": 1})
    bad["annotations"].append({"id": 904, "image_id": 2, "category_id": 1, "bbox": [500, 500, 20, 20]})
    bad["images"].append({"id": 1, "file_name": "images/dupe.jpg", "width": 64, "height": 64})
    bad["images"].append({"id": 5, "file_name": "images/missing.jpg", "width": 64, "height": 64})
    _register_images(datasets, files)
    datasets.register_json("datasets/det/annotations.json", bad)

    reasons = reasons_for(store.get_dataset("det"), "datasets/det/annotations.json")
    joined = "\n".join(reasons)
    assert "annotation 900 on image 1 has unknown category_id 77" in joined
    assert "annotation 901 on image 1 has a degenerate box" in joined
    assert "annotation 902 refers to unknown image id 42" in joined
    assert "annotation 903 has no 'bbox'" in joined
    assert "annotation 904 on image 2: box" in joined and "outside the 64x64 image" in joined
    assert "duplicate image id 1" in joined
    assert "image 5 (images/missing.jpg) not found" in joined
    # The valid annotations still count.
    assert store.get_dataset("det")["annotations"] == _expected_box_count(document)


def test_coco_missing_top_level_keys_is_one_issue(datasets):
    datasets.register_json("datasets/det/annotations.json", {"images": [], "annotations": []})

    [reason] = reasons_for(store.get_dataset("det"), "datasets/det/annotations.json")
    assert "missing 'categories'" in reason


def test_declared_size_that_differs_from_the_file_is_an_issue(datasets):
    document, files = _small_coco()
    document["images"][0]["width"] = 640
    _register_images(datasets, files)
    datasets.register_json("datasets/det/annotations.json", document)

    [reason] = reasons_for(store.get_dataset("det"), "datasets/det/annotations.json")
    assert "declared 640x64 but the file is 64x64" in reason
    assert len(store.dataset_items(["det"], "detection")) == 2


def test_parse_coco_reports_and_keeps_the_valid_rest():
    issues = IssueLog(100)
    parsed = parse_coco(
        {
            "images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 50}, {"file_name": "b.jpg"}],
            "categories": [{"id": 1, "name": "cat"}, {"id": 2}],
            "annotations": [
                {"id": 1, "image_id": 1, "category_id": 1, "bbox": [98, 10, 3.5, 10]},  # slightly out: clipped
                {"id": 2, "image_id": 1, "category_id": 1, "bbox": [10, 10, "w", 10]},
                {"id": 3, "image_id": 1, "category_id": 1, "bbox": [10, 10, 5, 5], "iscrowd": 1},
                {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5]},
            ],
        },
        key="datasets/x/a.json",
        issues=issues,
    )

    assert parsed is not None
    [image] = parsed.images
    assert image.boxes == [Box("cat", 98.0, 10.0, 100.0, 20.0)]
    reasons = [issue["reason"] for issue in issues.items]
    assert any("images[1] has no valid 'id'" in reason for reason in reasons)
    assert any("category 2 has no 'name'" in reason for reason in reasons)
    assert any("annotation 2 on image 1 has an invalid bbox" in reason for reason in reasons)
    assert any("duplicate annotation id 1" in reason for reason in reasons)
    assert all(issue["key"] == "datasets/x/a.json" for issue in issues.items)


def test_fit_box_clips_slightly_out_and_rejects_far_out_or_degenerate():
    assert fit_box(Box("a", -1, -1, 50, 50), 100, 100) == Box("a", 0, 0, 50, 50)
    for box in (Box("a", 90, 90, 160, 160), Box("a", 99.7, 10, 101, 20)):
        try:
            fit_box(box, 100, 100)
        except BoxRejected:
            continue
        raise AssertionError(f"{box} should be rejected")
