from __future__ import annotations

import hashlib
import json

from sightline import keys
from sightline.datasets import registration, store
from sightline_local import synthetic
from dataset_helpers import issue_keys, reasons_for
from support import make_zip, png


def test_class_folder_zip_registers_classes_and_counts(datasets):
    outcome = datasets.register("datasets/shapes/train.zip", synthetic.classification_zip(per_class=5))

    assert outcome["status"] == "registered"
    dataset = store.get_dataset("shapes")
    assert dataset["status"] == "ready"
    assert dataset["classes"] == {"circle": 5, "square": 5}
    assert dataset["images"] == 10
    assert dataset["annotations"] == 0
    assert dataset["class_counts"] == {"circle": {"images": 5, "boxes": 0}, "square": {"images": 5, "boxes": 0}}
    # Single-labelled images train a classifier, or a multi-label model (one label each).
    assert dataset["tasks"] == ["classification", "multilabel"]
    assert dataset["too_small"] == {} and dataset["duplicates"] == {"count": 0, "groups": []}
    assert dataset["issues"] == [] and dataset["issue_count"] == 0
    assert dataset["created_at"] and dataset["updated_at"]


def test_registered_images_are_copied_content_addressed(datasets):
    datasets.register("datasets/pets/cat/a.png", png(1))

    items = store.dataset_items(["pets"], "classification")
    assert len(items) == 1
    item = items[0]
    assert item["image"]["bucket"] == datasets.resources.artifact_bucket
    assert item["image"]["key"] == keys.image_key(item["id"], "png")
    assert datasets.artifact_exists(item["image"]["key"])
    assert (item["width"], item["height"], item["label"]) == (32, 32, "cat")


def test_zip_with_a_wrapping_folder_uses_the_class_folders(datasets):
    members = {f"pets/{label}/{n}.png": png(seed, label=shape)
               for seed, (label, shape, n) in enumerate([("cat", "circle", 1), ("cat", "circle", 2), ("dog", "square", 1)])}
    datasets.register("datasets/pets/pets.zip", make_zip(members))

    assert store.get_dataset("pets")["classes"] == {"cat": 2, "dog": 1}


def test_loose_images_in_class_folders(datasets):
    datasets.register("datasets/pets/cat/1.png", png(1))
    datasets.register("datasets/pets/dog/1.png", png(2, label="square"))

    dataset = store.get_dataset("pets")
    assert dataset["classes"] == {"cat": 1, "dog": 1}
    assert dataset["status"] == "ready"


def test_corrupt_image_in_zip_is_an_issue_and_the_others_register(datasets):
    archive = synthetic.classification_zip(per_class=3, extra={"circle/bad.png": b"\x89PNG\r\n\x1a\n garbage"})
    outcome = datasets.register("datasets/x/a.zip", archive)

    assert outcome["status"] == "registered"
    dataset = store.get_dataset("x")
    assert dataset["classes"] == {"circle": 3, "square": 3}
    [reason] = reasons_for(dataset, "datasets/x/a.zip!circle/bad.png")
    assert reason.startswith("not a readable image:")


def test_truncated_image_in_zip_is_an_issue(datasets):
    good = png(3)
    archive = make_zip({"cat/good.png": png(1), "cat/other.png": png(2), "cat/cut.png": good[: len(good) // 2]})
    datasets.register("datasets/x/a.zip", archive)

    dataset = store.get_dataset("x")
    assert dataset["classes"] == {"cat": 2}
    assert reasons_for(dataset, "datasets/x/a.zip!cat/cut.png")[0].startswith("not a readable image:")


def test_corrupt_loose_image_is_an_issue_and_keeps_the_dataset(datasets):
    datasets.register("datasets/x/cat/good.png", png(1))
    outcome = datasets.register("datasets/x/cat/bad.jpg", b"definitely not a jpeg")

    assert outcome["status"] == "invalid"
    dataset = store.get_dataset("x")
    assert dataset["images"] == 1 and dataset["status"] == "ready"
    assert reasons_for(dataset, "datasets/x/cat/bad.jpg")[0].startswith("not a readable image:")


def test_reupload_of_a_broken_file_replaces_only_that_contribution(datasets):
    datasets.register("datasets/x/cat/1.png", png(1))
    datasets.register("datasets/x/dog/1.png", png(2, label="square"))
    datasets.register("datasets/x/dog/1.png", b"broken now")

    dataset = store.get_dataset("x")
    assert dataset["classes"] == {"cat": 1}
    assert reasons_for(dataset, "datasets/x/dog/1.png")

    datasets.register("datasets/x/dog/1.png", png(2, label="square"))
    dataset = store.get_dataset("x")
    assert dataset["classes"] == {"cat": 1, "dog": 1}
    assert dataset["issues"] == []


def test_broken_reupload_of_an_archive_removes_only_its_images(datasets):
    datasets.register("datasets/x/cat/loose.png", png(100))
    datasets.register("datasets/x/more.zip", synthetic.classification_zip(per_class=2))
    assert store.get_dataset("x")["images"] == 5

    datasets.register("datasets/x/more.zip", b"PK\x03\x04 truncated zip")

    dataset = store.get_dataset("x")
    assert dataset["images"] == 1
    assert dataset["classes"] == {"cat": 1}
    assert reasons_for(dataset, "datasets/x/more.zip")[0].startswith("not a readable zip archive")


def test_unsupported_files_are_issues_and_harmless_files_are_skipped(datasets):
    datasets.register("datasets/x/cat/1.png", png(1))
    assert datasets.register("datasets/x/notes.pdf", b"%PDF-1.7")["status"] == "invalid"
    assert datasets.register("datasets/x/notes.txt", b"hello")["status"] == "invalid"
    assert datasets.register("datasets/x/.DS_Store", b"\x00\x00")["status"] == "skipped"
    assert datasets.register("datasets/x/__MACOSX/cat/._1.png", b"\x00")["status"] == "skipped"
    archive = make_zip({"cat/2.png": png(2), "readme.md": b"# hi", "__MACOSX/cat/._2.png": b"x", "cat/.DS_Store": b"x"})
    datasets.register("datasets/x/a.zip", archive)

    dataset = store.get_dataset("x")
    assert dataset["images"] == 2
    assert reasons_for(dataset, "datasets/x/notes.pdf") == ["unsupported file type .pdf"]
    # A text file could be an annotation (YOLO labels, classes.txt): it is read, and said to fit no format.
    assert reasons_for(dataset, "datasets/x/notes.txt")[0].startswith(".txt file fits no known annotation format")
    assert reasons_for(dataset, "datasets/x/a.zip!readme.md") == ["unsupported file type .md"]
    assert issue_keys(dataset) == {"datasets/x/notes.pdf", "datasets/x/notes.txt", "datasets/x/a.zip!readme.md"}


def test_keys_outside_a_valid_dataset_folder_are_rejected_with_a_reason(datasets):
    outside = datasets.register("uploads/cat.png", png(1))
    bad_name = datasets.register("datasets/bad name!/cat/1.png", png(1))
    no_folder = datasets.register("datasets/loose.png", png(1))

    assert outside["status"] == bad_name["status"] == no_folder["status"] == "rejected"
    assert "outside datasets/" in outside["issues"][0]["reason"]
    assert "invalid dataset name" in bad_name["issues"][0]["reason"]
    assert no_folder["issues"][0]["key"] == "datasets/loose.png"
    assert store.list_dataset_summaries() == ([], None)


def test_duplicate_event_is_a_no_op(datasets, monkeypatch):
    etag = datasets.upload("datasets/x/train.zip", synthetic.classification_zip(per_class=2))
    first = registration.register_object(datasets.resources.data_bucket, "datasets/x/train.zip", etag)
    assert first["status"] == "registered"
    before = datasets.resources.table.get_item(Key={"pk": "DATASET#x", "sk": "SOURCE#datasets/x/train.zip"})["Item"]

    def no_reads(*args, **kwargs):
        raise AssertionError("an already registered upload must not be read again")

    monkeypatch.setattr("sightline.datasets.s3io.open_object", no_reads)
    monkeypatch.setattr("sightline.datasets.s3io.read_object", no_reads)
    again = registration.register_object(datasets.resources.data_bucket, "datasets/x/train.zip", etag)

    assert again["status"] == "unchanged"
    after = datasets.resources.table.get_item(Key={"pk": "DATASET#x", "sk": "SOURCE#datasets/x/train.zip"})["Item"]
    assert after == before
    assert again["summary"]["classes"] == {"circle": 2, "square": 2}


def test_event_for_a_replaced_upload_is_superseded(datasets):
    old_etag = datasets.upload("datasets/x/cat/1.png", png(1))
    datasets.register("datasets/x/cat/1.png", png(2))

    stale = registration.register_object(datasets.resources.data_bucket, "datasets/x/cat/1.png", old_etag)

    assert stale["status"] == "superseded"
    [item] = store.dataset_items(["x"], "classification")
    assert item["id"] == hashlib.sha256(png(2)).hexdigest()


def test_older_sequencer_never_replaces_a_newer_registration(datasets):
    key = "datasets/x/cat/1.png"
    datasets.register(key, png(1), sequencer="0055AED6DCD90281E6")
    newer_id = store.dataset_items(["x"], "classification")[0]["id"]

    # A late event for an earlier upload of the same key (its version still readable, e.g. versioned bucket).
    late = registration.register_object(datasets.resources.data_bucket, key, None, sequencer="0055AED6DCD90281E5")

    assert late["status"] == "superseded"
    assert store.dataset_items(["x"], "classification")[0]["id"] == newer_id


def test_missing_object_is_reported_not_raised(datasets):
    outcome = registration.register_object(datasets.resources.data_bucket, "datasets/x/cat/gone.png", "abc")
    assert outcome["status"] == "missing"
    assert store.get_dataset("x") is None


def test_recompute_publishes_dataset_updated(datasets, monkeypatch):
    published = []
    monkeypatch.setattr("sightline.events.publish", lambda detail_type, detail: published.append((detail_type, detail)))

    datasets.register("datasets/x/cat/1.png", png(1))

    assert published[-1] == (
        "DatasetUpdated",
        {"name": "x", "status": "ready", "images": 1, "annotations": 0, "class_count": 1,
         "tasks": ["classification", "multilabel"], "issue_count": 0},
    )


def test_the_training_digest_changes_with_the_training_data_only(datasets):
    datasets.register("datasets/x/cat/1.png", png(1))
    first = store.get_dataset("x", consistent=True)["training_digests"]
    assert set(first) == {"classification", "multilabel"} and len(first["classification"]) == 64

    datasets.register("datasets/x/cat/1.png")  # the same upload again: recomputed, same data
    datasets.register("datasets/x/notes.txt", b"not an image")  # an issue, not training data
    assert store.get_dataset("x")["training_digests"] == first

    datasets.register("datasets/x/dog/2.png", png(2, label="square"))
    assert store.get_dataset("x")["training_digests"]["classification"] != first["classification"]


def test_a_relabelled_image_changes_the_digest_though_the_counts_do_not(datasets):
    datasets.register("datasets/x/cat/1.png", png(1))
    datasets.register("datasets/y/dog/1.png", png(1))
    x, y = store.get_dataset("x"), store.get_dataset("y")
    assert (x["images"], len(x["classes"])) == (y["images"], len(y["classes"]))
    assert x["training_digests"] != y["training_digests"]


def test_same_image_in_two_class_folders_keeps_the_later_uploads_label_and_says_so(datasets):
    image = png(1)
    datasets.register("datasets/x/cat/1.png", image)
    datasets.register("datasets/x/dog/1.png", image)

    dataset = store.get_dataset("x")
    assert dataset["images"] == 1
    assert dataset["classes"] == {"dog": 1}
    assert reasons_for(dataset, "datasets/x/dog/1.png") == [
        "datasets/x/dog/1.png was labelled 'cat' by datasets/x/cat/1.png; this later upload's 'dog' replaces it"]
    assert dataset["duplicates"] == {"count": 1, "groups": [
        {"sha256": store.dataset_items(["x"], "classification")[0]["id"],
         "paths": ["datasets/x/cat/1.png", "datasets/x/dog/1.png"], "copies": 2}]}


def test_image_outside_a_class_folder_waits_for_an_annotation_file(datasets):
    datasets.register("datasets/x/photo.png", png(1))

    dataset = store.get_dataset("x")
    # Nothing to train on, and the issue says why: invalid until an annotation file names the image.
    assert dataset["status"] == "invalid" and dataset["tasks"] == []
    assert "not in a class folder" in reasons_for(dataset, "datasets/x/photo.png")[0]


def test_removed_object_leaves_the_dataset(datasets):
    datasets.register("datasets/x/cat/1.png", png(1))
    datasets.register("datasets/x/cat/2.png", png(2))
    datasets.resources.s3.delete_object(Bucket=datasets.resources.data_bucket, Key="datasets/x/cat/2.png")

    outcome = registration.unregister_object(datasets.resources.data_bucket, "datasets/x/cat/2.png")

    assert outcome["status"] == "removed"
    assert store.get_dataset("x")["images"] == 1


def test_list_datasets_in_public_shape(datasets):
    datasets.register("datasets/b/cat/1.png", png(1))
    datasets.register("datasets/a/cat/1.png", png(2))

    listed, next_after = store.list_dataset_summaries()

    assert ([dataset["name"] for dataset in listed], next_after) == (["a", "b"], None)
    assert set(store.get_dataset("a")) == {"name", "status", "classes", "class_counts", "class_count", "images",
                                           "annotations", "tasks", "issues", "issue_count", "training_digests",
                                           "formats", "negatives", "duplicates", "too_small", "created_at",
                                           "updated_at"}
    assert set(listed[0]) == set(store.get_dataset("a")) - {"issues", "classes", "class_counts"}
    assert (listed[0]["formats"], listed[0]["negatives"]) == (["class-folders"], 0)
    assert store.get_dataset("nope") is None
    assert store.get_dataset("../etc") is None


def test_annotation_file_that_is_not_json_is_an_issue(datasets):
    datasets.register("datasets/x/labels.json", b"{not json")
    datasets.register("datasets/x/meta.json", json.dumps({"hello": 1}).encode())

    dataset = store.get_dataset("x")
    assert dataset["status"] == "invalid"
    assert reasons_for(dataset, "datasets/x/labels.json")[0].startswith("not valid JSON")
    assert reasons_for(dataset, "datasets/x/meta.json")[0].startswith("not a COCO annotation file")


def test_late_event_for_an_older_version_never_replaces_the_current_one(datasets):
    s3, bucket, key = datasets.resources.s3, datasets.resources.data_bucket, "datasets/x/cat/1.png"
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    first = s3.put_object(Bucket=bucket, Key=key, Body=png(1))
    second = s3.put_object(Bucket=bucket, Key=key, Body=png(2))

    # Events without sequencers (some producers omit them), delivered newest first.
    newest = registration.register_object(bucket, key, second["ETag"].strip('"'), second["VersionId"])
    late = registration.register_object(bucket, key, first["ETag"].strip('"'), first["VersionId"])

    assert (newest["status"], late["status"]) == ("registered", "superseded")
    [item] = store.dataset_items(["x"], "classification")
    assert item["id"] == hashlib.sha256(png(2)).hexdigest()
