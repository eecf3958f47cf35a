"""A dataset always ends in a state that says what happened (docs/architecture.md, "States")."""
from __future__ import annotations

import io
import zipfile

from sightline import keys
from sightline.datasets import registration, store
from support import make_zip, png


def test_an_archive_whose_every_member_is_refused_leaves_the_dataset_invalid(datasets):
    datasets.register("datasets/slip/evil.zip", make_zip({"../../etc/cron.d/x.png": png(1), "/abs/cat/y.png": png(2)}))

    dataset = store.get_dataset("slip")
    assert dataset["status"] == "invalid"
    assert dataset["images"] == 0 and dataset["issue_count"] >= 2


def test_a_zip_bomb_alone_leaves_the_dataset_invalid(datasets):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        with archive.open("cat/bomb.png", "w") as bomb:
            for _ in range(48):
                bomb.write(bytes(1024 * 1024))
    datasets.register("datasets/bomb/bomb.zip", buffer.getvalue())

    dataset = store.get_dataset("bomb")
    assert dataset["status"] == "invalid" and dataset["images"] == 0
    assert dataset["issues"] and all(issue["key"].startswith("datasets/bomb/bomb.zip") for issue in dataset["issues"])


def test_a_dataset_whose_files_were_all_deleted_is_empty(datasets):
    datasets.register("datasets/gone/cat/1.png", png(1))
    assert store.get_dataset("gone")["status"] == "ready"
    datasets.resources.s3.delete_object(Bucket=datasets.resources.data_bucket, Key="datasets/gone/cat/1.png")

    registration.unregister_object(datasets.resources.data_bucket, "datasets/gone/cat/1.png")

    dataset = store.get_dataset("gone")
    assert (dataset["status"], dataset["images"], dataset["issues"]) == ("empty", 0, [])


def test_an_invalid_dataset_becomes_ready_when_usable_data_arrives(datasets):
    datasets.register("datasets/mixed/labels.json", b"{not json")
    assert store.get_dataset("mixed")["status"] == "invalid"

    datasets.register("datasets/mixed/cat/1.png", png(1))

    assert store.get_dataset("mixed")["status"] == "ready"


def _legacy_item(name: str, **fields) -> dict:
    """A dataset META item as releases before terminal states wrote it."""
    return {
        "pk": keys.dataset_pk(name), "sk": keys.META, "gsi1pk": keys.DATASETS_INDEX_PK, "gsi1sk": name,
        "name": name, "classes": {}, "images": 0, "annotations": 0, "tasks": [], "issues": [], "issue_count": 0,
        "training_digests": {}, "listed_at": 1, "created_at": "2026-11-22T05:00:00Z", "updated_at": "2026-11-22T05:00:00Z",
        **fields,
    }


def test_datasets_stored_in_the_previous_layout_read_in_todays_states(datasets):
    table = datasets.resources.table
    table.put_item(Item=_legacy_item("stuck", status="registering", issue_count=2,
                                     issues=[{"key": "datasets/stuck/a.zip", "reason": "not a readable zip archive"}]))
    table.put_item(Item=_legacy_item("nothing", status="registering"))
    table.put_item(Item=_legacy_item("old-ready", status="ready", images=3, tasks=["classification"],
                                     classes={"cat": 3}))
    legacy = _legacy_item("no-status")
    del legacy["issues"]
    table.put_item(Item=legacy)

    assert store.get_dataset("stuck")["status"] == "invalid"
    assert store.get_dataset("nothing")["status"] == "empty"
    assert store.get_dataset("old-ready")["status"] == "ready"
    assert store.get_dataset("no-status")["status"] == "empty"
    assert {d["name"]: d["status"] for d in store.list_dataset_summaries()[0]} == {
        "nothing": "empty", "no-status": "empty", "old-ready": "ready", "stuck": "invalid"}


def test_the_next_change_writes_the_migrated_state_for_good(datasets):
    datasets.resources.table.put_item(Item=_legacy_item("stuck", status="registering"))

    datasets.register("datasets/stuck/cat/1.png", png(1))

    stored = datasets.resources.table.get_item(Key={"pk": keys.dataset_pk("stuck"), "sk": keys.META})["Item"]
    assert stored["status"] == "ready"


def test_annotation_sources_stored_before_formats_existed_still_join(datasets):
    """Previous layout: an annotation file's source item said kind "coco" and its stored parse had no "format",
    "box_units" or "class_indices". Such a dataset recomputes to the same contents."""
    import json

    from sightline_local import synthetic

    document, files = synthetic.coco_dataset(images=3, size=64, seed=9)
    datasets.register_json("datasets/old/annotations.json", document)
    for name, data in files.items():
        datasets.register(f"datasets/old/{name}", data)
    before = store.get_dataset("old")

    table, s3 = datasets.resources.table, datasets.resources.s3
    item = table.get_item(Key={"pk": keys.dataset_pk("old"), "sk": keys.source_sk("datasets/old/annotations.json")})["Item"]
    table.put_item(Item={**item, "kind": "coco"})
    bucket = datasets.resources.artifact_bucket
    result = json.loads(s3.get_object(Bucket=bucket, Key=item["result_key"])["Body"].read())
    for annotation_file in result["annotation_files"]:
        for field in ("format", "box_units", "class_indices"):
            del annotation_file[field]
    s3.put_object(Bucket=bucket, Key=item["result_key"], Body=json.dumps(result).encode())

    after = registration.recompute_dataset("old")

    assert after["status"] == "ready" and after["issues"] == []
    assert (after["classes"], after["annotations"], after["training_digests"]) == (
        before["classes"], before["annotations"], before["training_digests"])
