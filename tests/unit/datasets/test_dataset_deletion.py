"""DELETE /v1/datasets/{name}: the dataset, its uploads and the images nothing else uses go; the rest stays."""
from __future__ import annotations

import json

import pytest
from boto3.dynamodb.conditions import Key

from sightline import keys, model_registry, templates
from sightline.datasets import deletion, registration, snapshots, store
from sightline.datasets.delivery import RegistrationBatch
from sightline.datasets.manifest import build_manifest
from sightline.errors import Conflict, NotFound
from support import make_zip, png


def queued(resources) -> list[dict]:
    messages = resources.sqs.receive_message(QueueUrl=resources.dataset_queue_url, MaxNumberOfMessages=10)
    return [json.loads(message["Body"]) for message in messages.get("Messages", [])]


def stored_image_keys(resources) -> set[str]:
    listing = resources.s3.list_objects_v2(Bucket=resources.artifact_bucket, Prefix="images/")
    return {obj["Key"] for obj in listing.get("Contents", [])}


def dataset_item_count(resources, name: str) -> int:
    return resources.table.query(KeyConditionExpression=Key("pk").eq(keys.dataset_pk(name)))["Count"]


def delete(resources, name: str) -> list[dict]:
    """Ask for the deletion and run the queued work as the register function would."""
    assert deletion.request_deletion(name) == {"name": name, "status": "deleting"}
    outcomes = []
    for body in queued(resources):
        outcomes += RegistrationBatch.register_message(json.dumps(body))
    return outcomes


def test_a_deleted_dataset_takes_its_uploads_items_and_unshared_images_with_it(datasets):
    resources = datasets.resources
    shared = png(1)
    datasets.register("datasets/gone/train.zip", make_zip({"cat/shared.png": shared, "cat/own.png": png(2)}))
    datasets.register("datasets/gone/dog/loose.png", png(3))
    datasets.register("datasets/gone/notes.csv", b"image,label\n")
    datasets.register("datasets/kept/cat/shared.png", shared)
    images_before = stored_image_keys(resources)

    outcomes = delete(resources, "gone")

    assert outcomes == [{"key": "datasets/gone/", "dataset": None, "status": "deleted"}]
    assert store.get_dataset("gone") is None and dataset_item_count(resources, "gone") == 0
    assert resources.s3.list_objects_v2(Bucket=resources.data_bucket, Prefix="datasets/gone/")["KeyCount"] == 0
    kept_image = store.dataset_items(["kept"], "classification")[0]["image"]["key"]
    assert stored_image_keys(resources) == {kept_image} and len(images_before) == 3
    assert not resources.s3.list_objects_v2(Bucket=resources.artifact_bucket,
                                            Prefix="registry/datasets/gone/").get("Contents")
    assert store.get_dataset("kept")["images"] == 1
    # Its own uploads' removal events come later and find nothing to do.
    assert registration.unregister_object(resources.data_bucket, "datasets/gone/dog/loose.png")["status"] == "missing"
    assert store.get_dataset("gone") is None


def test_images_of_a_training_snapshot_outlive_the_dataset(datasets):
    datasets.classification("pets")
    snapshot = snapshots.record_snapshot(build_manifest(["pets"], "classification", 0.2), "mdl-x", 1)
    images = stored_image_keys(datasets.resources)

    delete(datasets.resources, "pets")

    assert store.get_dataset("pets") is None
    assert stored_image_keys(datasets.resources) == images  # the snapshot still needs every one
    manifest = json.loads(datasets.resources.s3.get_object(Bucket=datasets.resources.artifact_bucket,
                                                           Key=snapshots.snapshot_key(snapshot))["Body"].read())
    assert {item["image"]["key"] for item in manifest["items"]} == images


def test_a_dataset_a_model_trains_on_cannot_be_deleted(datasets):
    datasets.classification("pets")
    model, _ = model_registry.create_model(
        name="m", task="classification", datasets=["pets"], template="mobilenet_v3_small",
        params=templates.TEMPLATES["mobilenet_v3_small"].resolve_params({}))

    with pytest.raises(Conflict, match=rf"while a model trains on it \({model['model_id']} v1\)"):
        deletion.request_deletion("pets")
    assert store.get_dataset("pets")["status"] == "ready" and queued(datasets.resources) == []


def test_an_unknown_dataset_is_not_found(datasets):
    for name in ("nope", "../etc"):
        with pytest.raises(NotFound):
            deletion.request_deletion(name)


def test_uploads_during_a_deletion_never_bring_the_dataset_back_half_made(datasets):
    datasets.classification("pets")
    deletion.request_deletion("pets")

    datasets.register("datasets/pets/cat/late.png", png(50))  # registered, but the recompute leaves it alone
    assert store.get_dataset("pets")["status"] == "deleting"

    for body in queued(datasets.resources):
        RegistrationBatch.register_message(json.dumps(body))
    assert store.get_dataset("pets") is None and dataset_item_count(datasets.resources, "pets") == 0


def test_a_deletion_that_runs_out_of_time_continues_where_it_stopped(datasets, monkeypatch):
    datasets.classification("pets")
    monkeypatch.setattr(deletion, "STEP_SECONDS", -1)  # every step is out of time after its first item
    monkeypatch.setattr(deletion, "CONTINUE_AFTER_SECONDS", 0)

    outcomes = delete(datasets.resources, "pets")
    steps = 1
    while outcomes[-1]["status"] == "deleting":
        steps += 1
        outcomes = [outcome for body in queued(datasets.resources)
                    for outcome in RegistrationBatch.register_message(json.dumps(body))]
    assert steps > 3 and store.get_dataset("pets") is None


def test_a_stray_deletion_message_never_deletes_a_live_dataset(datasets):
    datasets.classification("pets")
    RegistrationBatch.register_message(json.dumps({"sightline_work": "delete-dataset", "dataset": "pets"}))
    assert store.get_dataset("pets")["images"] == 11
