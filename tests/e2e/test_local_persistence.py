"""The local stack remembers: a dataset, its images, a trained model, a scoped key and the stack's own key come
back after a stop and a start on the same state dir, without registering or training anything again; ``fresh``
starts empty."""
from __future__ import annotations

import json
import time
import urllib.request

import pytest

from sightline_client import Forbidden
from sightline_local import synthetic
from sightline_local.stack import LocalStack, StackConfig
from support import StackClient, free_port, wait_until

pytestmark = pytest.mark.e2e

TRAINING_TIMEOUT = 600


def start(state_dir, **config) -> LocalStack:
    # No api_key: the stack's own key must come back from the snapshot, not from the test.
    return LocalStack(StackConfig(aws_port=free_port(), api_port=free_port(), state_dir=state_dir, **config)).start()


def record_notifications(monkeypatch) -> list[tuple[str, str, str]]:
    """Every S3 event notification moto sends from now on: (bucket, event, key)."""
    from moto.s3 import notifications

    sent: list[tuple[str, str, str]] = []
    original = notifications.send_event

    def recording(account_id, event_name, bucket, key, *args, **kwargs):
        sent.append((bucket.name, str(getattr(event_name, "value", event_name)), key.name))
        return original(account_id, event_name, bucket, key, *args, **kwargs)

    monkeypatch.setattr(notifications, "send_event", recording)
    return sent


def source_items(stack: LocalStack) -> list[dict]:
    table = stack.client("dynamodb")
    return sorted(table.query(TableName=stack.output("TableName"), KeyConditionExpression="pk = :pk",
                              ExpressionAttributeValues={":pk": {"S": "DATASET#shapes"}})["Items"],
                  key=lambda item: item["sk"]["S"])


def test_a_restarted_stack_has_its_datasets_models_and_keys_and_fresh_starts_empty(tmp_path, monkeypatch):
    state_dir = tmp_path / "state"
    image = synthetic.encode(synthetic.shapes_image(__import__("random").Random(5), 32, 32, count=1,
                                                    labels=("circle",))[0])

    # ------------------------------------------------------------ the first run
    first = start(state_dir, snapshot_seconds=1)
    try:
        api = StackClient(first.config.api_url, first.api_key)
        bucket = first.output("DataBucketName")
        first.client("s3").put_object(Bucket=bucket, Key="datasets/shapes/shapes.zip",
                                      Body=synthetic.classification_zip(per_class=6, size=32))
        dataset = wait_until(lambda: api.get_dataset("shapes"), lambda d: d["status"] == "ready", timeout=120)
        images = api.list_dataset_images("shapes")
        scoped = api.create_key("camera", ["read", "predict"])["key"]
        assert api.last.status_code == 201
        model_id = api.create_model("shapes", "classification", ["shapes"],
                                    params={"epochs": 1, "image_size": 32, "batch_size": 8})["model_id"]
        assert api.last.status_code == 202
        wait_until(lambda: api.get_model(model_id), lambda m: m["status"] in ("ready", "failed"),
                   timeout=TRAINING_TIMEOUT, interval=2)
        version = api.get_version(model_id, 1)
        assert version["status"] == "ready", version.get("failure_reason")
        predicted = api.predict(model_id, image)
        # After a change the stack writes a snapshot within snapshot_seconds while it runs (a kill -9 loses little).
        manifest = state_dir / "snapshot" / "snapshot.json"
        deadline = time.monotonic() + 30
        while not (manifest.exists() and json.loads(manifest.read_text())["tables"]["SightlineTable"]):
            assert time.monotonic() < deadline, "no snapshot was written while the stack ran"
            time.sleep(0.5)
        sources_before = source_items(first)
        stack_key = first.api_key
    finally:
        first.stop()
    written = first.last_snapshot
    assert written is not None and written.datasets == 1 and written.models == 1

    # ------------------------------------------------------------ the same state dir again
    notified = record_notifications(monkeypatch)
    second = start(state_dir)
    try:
        assert second.api_key == stack_key and second.restored is not None
        assert (second.restored.datasets, second.restored.models) == (1, 1)
        api = StackClient(second.config.api_url, stack_key)
        assert api.get_dataset("shapes") == dataset
        again = api.list_dataset_images("shapes")
        assert [(i["sha256"], i["labels"]) for i in again["images"]] == [(i["sha256"], i["labels"]) for i in images["images"]]
        thumbnail = urllib.request.urlopen(again["images"][0]["thumbnail_url"], timeout=10).read()
        assert thumbnail[:4] == b"\x89PNG" or thumbnail[:2] == b"\xff\xd8"
        camera = StackClient(second.config.api_url, scoped)
        camera.list_datasets()
        assert camera.last.status_code == 200
        # The model's version pinned its model.onnx by S3 version id and sha256: predict checks both.
        assert camera.predict(model_id, image) == predicted
        time.sleep(3)  # a registration the restore set off would have changed the dataset's items by now
        # Dozens of objects restored into the two buckets, not one notification (the deployment's own bucket of
        # function packages is written at every start, as a deployment does).
        assert [sent for sent in notified if sent[0] in (bucket, second.output("ArtifactBucketName"))] == []
        assert any(sent[0] == "sightline-local-deployments" for sent in notified)  # the recorder saw the start
        assert source_items(second) == sources_before  # same items: nothing registered or recomputed again
        assert api.list_versions(model_id)["versions"][0]["status"] == "ready"
    finally:
        second.stop()

    # ------------------------------------------------------------ fresh
    fresh = start(state_dir, fresh=True)
    try:
        assert fresh.discarded == state_dir / "snapshot.discarded" and fresh.restored is None
        assert fresh.api_key != stack_key
        api = StackClient(fresh.config.api_url, fresh.api_key)
        assert api.list_datasets()["datasets"] == []
        assert api.list_models() == []
        with pytest.raises(Forbidden) as refused:
            StackClient(fresh.config.api_url, scoped).list_datasets()
        assert refused.value.status == 403
    finally:
        fresh.stop()
