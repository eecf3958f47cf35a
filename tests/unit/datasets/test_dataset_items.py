"""The dataset as items: classes, issues and image entries of their own, read back a page at a time."""
from __future__ import annotations

import io
import json
from urllib.parse import urlparse

import pytest
from dataset_helpers import reasons_for, solid_image
from PIL import Image

from sightline import keys
from sightline.datasets import registration, store
from support import make_zip, png


def _coco(categories: int, boxes_per_category: int = 1) -> dict:
    return {
        "images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 64}],
        "annotations": [{"id": n * boxes_per_category + k + 1, "image_id": 1, "category_id": n + 1,
                         "bbox": [k % 60, k % 60, 4, 4]}
                        for n in range(categories) for k in range(boxes_per_category)],
        "categories": [{"id": n + 1, "name": f"class-{n:05d}"} for n in range(categories)],
    }


def test_a_dataset_of_ten_thousand_classes_registers_and_no_item_nears_400_kb(datasets):
    datasets.register("datasets/many/a.png", png(1, size=64))
    datasets.register_json("datasets/many/annotations.json", _coco(10_000))

    dataset = store.get_dataset("many")
    assert dataset["status"] == "ready"
    assert dataset["class_count"] == len(dataset["classes"]) == 10_000
    assert dataset["class_counts"]["class-09999"] == {"images": 1, "boxes": 1}
    meta = datasets.resources.table.get_item(Key={"pk": keys.dataset_pk("many"), "sk": keys.META})["Item"]
    assert len(json.dumps(meta, default=str)) < 20_000
    [item] = store.dataset_items(["many"], "detection")
    entry = datasets.resources.table.get_item(Key={"pk": keys.dataset_pk("many"), "sk": keys.entry_sk(item["id"])})
    # The entry shows the first 1,000 boxes and counts all; the training manifest has every one.
    assert (len(entry["Item"]["boxes"]), entry["Item"]["box_count"], len(item["boxes"])) == (1000, 10_000, 10_000)
    [summary], _ = store.list_dataset_summaries()
    assert "classes" not in summary and summary["class_count"] == 10_000


def test_issues_are_read_a_page_at_a_time_in_the_order_found(datasets):
    for n in range(150):
        datasets.register(f"datasets/bad/cat/{n:03d}.png", b"not an image", recompute=False)
    registration.recompute_dataset("bad")

    dataset = store.get_dataset("bad")
    assert dataset["issue_count"] == 150 and len(dataset["issues"]) == store.ISSUES_IN_DATASET
    first, after = store.list_issues("bad", limit=100)
    second, last = store.list_issues("bad", limit=100, after=after)
    assert (len(first), len(second), last) == (100, 50, None)
    keys_seen = [issue["key"] for issue in first + second]
    assert keys_seen == sorted(keys_seen) == [f"datasets/bad/cat/{n:03d}.png" for n in range(150)]


def test_images_are_listed_with_their_labels_by_class_a_page_at_a_time(datasets):
    for n in range(3):
        datasets.register(f"datasets/pets/cat/{n}.png", png(n))
    datasets.register("datasets/pets/dog/0.png", png(10))

    cats, cursor = store.list_images("pets", label="cat", limit=2)
    more, end = store.list_images("pets", label="cat", limit=2, after=cursor)
    assert (len(cats), len(more), end) == (2, 1, None)
    assert all(image["labels"] == ["cat"] and image["classes"] == ["cat"] for image in cats + more)
    [dog], _ = store.list_images("pets", label="dog")
    assert dog["path"] == "datasets/pets/dog/0.png" and dog["copies"] == 1
    assert store.list_images("pets", label="fox") == ([], None)


def test_a_big_image_is_listed_with_a_presigned_thumbnail_and_a_small_one_as_it_is(datasets, aws_resources):
    big = solid_image("JPEG", size=(1200, 600))
    datasets.register("datasets/pets/cat/big.jpg", big)
    datasets.register("datasets/pets/cat/small.png", png(1))

    images = {image["path"].rsplit("/", 1)[1]: image for image in store.list_images("pets")[0]}
    path = urlparse(images["big.jpg"]["thumbnail_url"]).path.lstrip("/")
    thumbnail_key = path.removeprefix(f"{aws_resources.artifact_bucket}/")
    assert thumbnail_key == keys.thumbnail_key(images["big.jpg"]["sha256"])
    thumbnail = aws_resources.s3.get_object(Bucket=aws_resources.artifact_bucket, Key=thumbnail_key)["Body"].read()
    with Image.open(io.BytesIO(thumbnail)) as opened:
        assert (opened.format, opened.size) == ("JPEG", (256, 128))
    assert urlparse(images["small.png"]["thumbnail_url"]).path.endswith(".png")


def test_a_later_annotation_file_replaces_the_labels_of_an_earlier_one_and_says_so(datasets):
    datasets.register("datasets/x/a.png", png(1))
    datasets.register("datasets/x/b.png", png(2))
    datasets.register("datasets/x/labels.csv", b"image,label\na.png,cat\nb.png,dog\n")
    datasets.register("datasets/x/fixes.csv", b"image,label\na.png,fox\n")

    dataset = store.get_dataset("x")
    assert dataset["classes"] == {"dog": 1, "fox": 1}
    assert reasons_for(dataset, "datasets/x/fixes.csv") == [
        "datasets/x/a.png was labelled 'cat' by datasets/x/labels.csv; this later upload's 'fox' replaces it"]


def test_a_later_box_file_replaces_the_boxes_of_an_earlier_one(datasets):
    datasets.register("datasets/x/a.png", png(1, size=64))
    datasets.register("datasets/x/boxes.csv", b"image_path,xmin,ymin,xmax,ymax,label\na.png,1,1,10,10,cat\na.png,20,20,30,30,cat\n")
    datasets.register("datasets/x/more.csv", b"image_path,xmin,ymin,xmax,ymax,label\na.png,5,5,50,50,dog\n")

    [item] = store.dataset_items(["x"], "detection")
    assert [box["label"] for box in item["boxes"]] == ["dog"]
    assert "had 2 box(es) from datasets/x/boxes.csv; this later upload's 1 replace them" in \
        reasons_for(store.get_dataset("x"), "datasets/x/more.csv")[0]


def test_a_multi_label_csv_makes_multi_label_training_data(datasets):
    for n in range(3):
        datasets.register(f"datasets/ml/{n}.png", png(n))
    datasets.register("datasets/ml/labels.csv", b"image,labels\n0.png,cat;outdoor\n1.png,dog\n2.png,cat\n")

    dataset = store.get_dataset("ml")
    assert dataset["tasks"] == ["classification", "multilabel"]
    assert dataset["class_counts"] == {"cat": {"images": 2, "boxes": 0}, "dog": {"images": 1, "boxes": 0},
                                       "outdoor": {"images": 1, "boxes": 0}}
    multilabel = sorted(item["labels"] for item in store.dataset_items(["ml"], "multilabel"))
    assert multilabel == [["cat"], ["cat", "outdoor"], ["dog"]]
    # A classifier answers one class: the image with two is not a classification example.
    assert sorted(item["label"] for item in store.dataset_items(["ml"], "classification")) == ["cat", "dog"]


def test_watson_negatives_are_classification_items_of_no_class(datasets):
    datasets.register("datasets/w/cat_positive_examples.zip", make_zip({f"{n}.png": png(n) for n in range(2)}))
    datasets.register("datasets/w/dog_positive_examples.zip", make_zip({f"{n}.png": png(10 + n) for n in range(2)}))
    datasets.register("datasets/w/negative_examples.zip", make_zip({"n.png": png(99)}))

    items = store.dataset_items(["w"], "classification")
    assert sorted(str(item["label"]) for item in items) == ["None", "cat", "cat", "dog", "dog"]
    assert sorted(item["labels"] for item in store.dataset_items(["w"], "multilabel")) == [[], ["cat"], ["cat"],
                                                                                           ["dog"], ["dog"]]


def test_a_dataset_too_small_to_train_says_which_classes_need_more(datasets):
    datasets.register("datasets/small/train.zip", make_zip(
        {**{f"cat/{n}.png": png(n) for n in range(5)}, **{f"dog/{n}.png": png(10 + n) for n in range(2)}}))

    dataset = store.get_dataset("small")
    assert dataset["status"] == "ready"
    assert dataset["too_small"]["classification"] == {"reasons": ["class 'dog' has 2 image(s)"], "count": 1}


def test_a_change_registered_while_a_recompute_runs_makes_it_run_again(datasets, monkeypatch):
    """The second recompute cannot take the dataset, so it marks it; the first sees the mark and runs once more."""
    from sightline.datasets import catalog, summary

    real_contents = catalog.dataset_contents
    runs = []

    def contents(name):
        runs.append(name)
        if len(runs) == 1:  # meanwhile another batch registers a dog and asks for a recompute of its own
            assert datasets.register("datasets/x/dog/2.png", png(2))["status"] == "registered"
        return real_contents(name)

    datasets.register("datasets/x/cat/1.png", png(1), recompute=False)
    monkeypatch.setattr(catalog, "dataset_contents", contents)
    result = summary.recompute_dataset("x")

    assert len(runs) == 2
    assert result["classes"] == store.get_dataset("x")["classes"] == {"cat": 1, "dog": 1}
    meta = datasets.resources.table.get_item(Key={"pk": keys.dataset_pk("x"), "sk": keys.META})["Item"]
    assert "lease_owner" not in meta and "dirty" not in meta


def _entry(datasets, name: str, path: str) -> dict:
    [row] = [row for row in datasets.resources.table.query(
        KeyConditionExpression="pk = :pk AND begins_with(sk, :entry)",
        ExpressionAttributeValues={":pk": keys.dataset_pk(name), ":entry": "ENTRY#"})["Items"] if row["path"] == path]
    return row


def _mark(datasets, row: dict) -> None:
    datasets.resources.table.update_item(Key={"pk": row["pk"], "sk": row["sk"]}, UpdateExpression="SET marked = :t",
                                         ExpressionAttributeValues={":t": True})


def test_a_recompute_rewrites_the_entries_that_changed_and_leaves_the_others(datasets):
    datasets.register("datasets/x/a.png", png(1))
    datasets.register("datasets/x/b.png", png(2))
    datasets.register("datasets/x/labels.csv", b"image,label\na.png,cat\nb.png,dog\n")
    for path in ("datasets/x/a.png", "datasets/x/b.png"):
        _mark(datasets, _entry(datasets, "x", path))

    datasets.register("datasets/x/fixes.csv", b"image,label\na.png,fox\n")

    relabelled, unchanged = _entry(datasets, "x", "datasets/x/a.png"), _entry(datasets, "x", "datasets/x/b.png")
    assert relabelled["labels"] == ["fox"] and "marked" not in relabelled
    assert unchanged["labels"] == ["dog"] and unchanged["marked"] is True


def test_an_entry_stored_without_a_digest_is_rewritten_once_and_then_left(datasets):
    from sightline.datasets import summary

    datasets.register("datasets/x/cat/1.png", png(1))
    row = _entry(datasets, "x", "datasets/x/cat/1.png")
    datasets.resources.table.update_item(Key={"pk": row["pk"], "sk": row["sk"]},
                                         UpdateExpression="SET marked = :t REMOVE digest",
                                         ExpressionAttributeValues={":t": True})
    summary.recompute_dataset("x")
    rewritten = _entry(datasets, "x", "datasets/x/cat/1.png")
    assert "marked" not in rewritten and rewritten["digest"]
    _mark(datasets, rewritten)
    summary.recompute_dataset("x")
    assert _entry(datasets, "x", "datasets/x/cat/1.png")["marked"] is True


def test_the_lease_of_a_crashed_recompute_expires(datasets):
    from sightline.datasets import summary

    datasets.register("datasets/x/cat/1.png", png(1))
    datasets.resources.table.update_item(Key={"pk": keys.dataset_pk("x"), "sk": keys.META},
                                         UpdateExpression="SET lease_owner = :o, lease_until = :u",
                                         ExpressionAttributeValues={":o": "crashed", ":u": 1})
    datasets.register("datasets/x/cat/2.png", png(2), recompute=False)

    assert summary.recompute_dataset("x")["images"] == 2


@pytest.mark.parametrize("old_item", [
    {"classes": {"cat": 2}, "issues": [{"key": "k", "reason": "r"}], "issue_count": 1, "status": "ready",
     "tasks": ["classification"]},
])
def test_an_item_from_before_class_items_reads_back_and_is_rewritten_on_the_next_change(datasets, old_item):
    datasets.resources.table.put_item(Item={"pk": keys.dataset_pk("old"), "sk": keys.META, "name": "old",
                                            **old_item})
    dataset = store.get_dataset("old")
    assert (dataset["classes"], dataset["issues"]) == ({"cat": 2}, [{"key": "k", "reason": "r"}])

    datasets.register("datasets/old/cat/1.png", png(1))
    meta = datasets.resources.table.get_item(Key={"pk": keys.dataset_pk("old"), "sk": keys.META})["Item"]
    assert "classes" not in meta and "issues" not in meta
    assert store.get_dataset("old")["classes"] == {"cat": 1}
