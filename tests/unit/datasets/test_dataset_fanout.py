"""Big zips register in chunks (``sightline.datasets.fanout``): queued one per chunk, each retried alone, the
archive registered when the last is done, and the result the same as registering the zip in one go. The chunk
threshold is lowered to a few entries here (``ARCHIVE_CHUNK_MEMBERS``)."""
from __future__ import annotations

import copy
import json

import pytest
from botocore.exceptions import ClientError

from sightline import keys
from sightline.datasets import fanout, store
from sightline.datasets.delivery import RegistrationBatch
from support import LambdaContext, intercept_aws, load_event, load_function, make_zip, png

CONTEXT = LambdaContext()


def members() -> dict[str, bytes]:
    """A Pascal VOC export whose annotations and images land in different chunks, with members that become
    issues (path traversal, an unsupported file, an empty image, an image no annotation lists) among them."""
    def voc(stem: str, label: str) -> bytes:
        return (f"<annotation><filename>{stem}.png</filename><size><width>32</width><height>32</height></size>"
                f"<object><name>{label}</name><bndbox><xmin>2</xmin><ymin>2</ymin><xmax>20</xmax><ymax>20</ymax>"
                "</bndbox></object></annotation>").encode()

    labels = {"a": "boat", "b": "buoy", "c": "boat", "d": "buoy"}
    archive = {f"Annotations/{stem}.xml": voc(stem, label) for stem, label in labels.items()}
    archive.update({"../escape.png": png(1), "JPEGImages/": b"", "notes.docx": b"words", "JPEGImages/empty.png": b""})
    archive.update({f"JPEGImages/{stem}.png": png(10 + number) for number, stem in enumerate(labels)})
    archive["JPEGImages/extra.png"] = png(20)
    return archive


def queued(resources) -> list[tuple[str, str, str]]:
    """(message id, body, receipt handle) of every queued message, taken off the queue."""
    found = []
    while True:
        received = resources.sqs.receive_message(QueueUrl=resources.dataset_queue_url, MaxNumberOfMessages=10)
        if not received.get("Messages"):
            return found
        for message in received["Messages"]:
            found.append((message["MessageId"], message["Body"], message["ReceiptHandle"]))
            resources.sqs.delete_message(QueueUrl=resources.dataset_queue_url, ReceiptHandle=message["ReceiptHandle"])


def run(bodies: list[str]) -> RegistrationBatch:
    """One batch of the register function over these message bodies, recompute included."""
    batch = RegistrationBatch()
    batch.register_messages([(f"message-{number}", body) for number, body in enumerate(bodies)])
    batch.recompute()
    return batch


def comparable(dataset: dict, name: str) -> dict:
    """A dataset without its name and times, its keys as another dataset would have them."""
    text = json.dumps({key: value for key, value in dataset.items()
                       if key not in ("name", "created_at", "updated_at")}, sort_keys=True, default=str)
    return json.loads(text.replace(f"datasets/{name}/", "datasets/<name>/"))


@pytest.fixture
def chunked(settings_env):
    settings_env(ARCHIVE_CHUNK_MEMBERS="3")


def test_a_zip_registered_in_chunks_equals_the_same_zip_registered_at_once(datasets, settings_env):
    data = make_zip(members())
    assert datasets.register("datasets/whole/all.zip", data)["status"] == "registered"

    settings_env(ARCHIVE_CHUNK_MEMBERS="3")
    outcome = datasets.register("datasets/parts/all.zip", data)
    assert (outcome["status"], outcome["chunks"]) == ("registering", 5)
    assert store.get_dataset("parts") is None  # nothing changes until the last chunk is done
    messages = queued(datasets.resources)
    assert [json.loads(body)["sightline_work"] for _, body, _ in messages] == [fanout.ARCHIVE_CHUNK] * 5

    run([body for _, body, _ in messages])

    whole, parts = store.get_dataset("whole"), store.get_dataset("parts")
    assert comparable(parts, "parts") == comparable(whole, "whole")
    assert parts["images"] == 5 and parts["classes"] == {"boat": 2, "buoy": 2} and parts["annotations"] == 4
    assert {issue["key"].rpartition("!")[2] for issue in parts["issues"]} == {
        "../escape.png", "notes.docx", "JPEGImages/empty.png", "JPEGImages/extra.png"}
    for task in ("classification", "detection"):
        assert store.dataset_items(["parts"], task) == store.dataset_items(["whole"], task)
    source = datasets.resources.table.get_item(Key={"pk": "DATASET#parts", "sk": "SOURCE#datasets/parts/all.zip"})["Item"]
    assert source["chunk_count"] == 5 and len(source["result_keys"]) == 5 and source["image_count"] == 5
    progress = datasets.resources.table.get_item(Key=fanout.progress_key("parts", "datasets/parts/all.zip"))
    assert "Item" not in progress  # the SOURCE item replaced it


def test_a_redelivered_chunk_counts_once(datasets, chunked):
    datasets.register("datasets/x/all.zip", make_zip(members()))
    bodies = [body for _, body, _ in queued(datasets.resources)]

    run([bodies[0]])
    run([bodies[0]])  # delivered again before the others
    run(bodies[1:])
    assert store.get_dataset("x")["images"] == 5

    again = run([bodies[2]])  # and once more after the archive was registered: nothing to do
    assert again.outcomes["message-0"][0]["status"] == "superseded" and not again.datasets
    assert store.get_dataset("x")["images"] == 5


def test_a_failed_chunk_is_retried_alone_and_the_others_stay_done(datasets, chunked, monkeypatch):
    datasets.register("datasets/x/all.zip", make_zip(members()))
    messages = queued(datasets.resources)
    failing = [True]

    def throttled_once(put_object, **kwargs):
        if failing[0] and kwargs["Key"].endswith("/chunk-00002.json"):
            failing[0] = False
            raise ClientError({"Error": {"Code": "SlowDown", "Message": "slow down"}}, "PutObject")
        return put_object(**kwargs)

    intercept_aws(monkeypatch, "s3", "put_object", throttled_once)
    template = load_event("sqs_s3_notification.json")["Records"][0]
    records = [{**copy.deepcopy(template), "messageId": message_id, "body": body} for message_id, body, _ in messages]
    handler = load_function("register_dataset").handler

    assert handler({"Records": records}, CONTEXT) == {"batchItemFailures": [{"itemIdentifier": messages[2][0]}]}
    progress = datasets.resources.table.get_item(Key=fanout.progress_key("x", "datasets/x/all.zip"))["Item"]
    assert progress["done"] == {0, 1, 3, 4} and store.get_dataset("x") is None

    assert handler({"Records": [records[2]]}, CONTEXT) == {"batchItemFailures": []}
    assert store.get_dataset("x")["images"] == 5


def test_a_newer_upload_of_the_key_mid_way_wins(datasets, chunked):
    key = "datasets/x/all.zip"
    datasets.register(key, make_zip(members()))
    older = [body for _, body, _ in queued(datasets.resources)]
    run(older[:2])

    newer = make_zip({f"bird/{n}.png": png(100 + n) for n in range(2)})  # small: registered at once
    assert datasets.register(key, newer)["status"] == "registered"
    late = run(older[2:])  # their reads are pinned to the older upload's ETag: they give up

    assert {outcome["status"] for outcomes in late.outcomes.values() for outcome in outcomes} == {"superseded"}
    dataset = store.get_dataset("x")
    assert dataset["classes"] == {"bird": 2} and dataset["images"] == 2
    assert "Item" not in datasets.resources.table.get_item(Key=fanout.progress_key("x", key))


def test_an_older_upload_never_replaces_a_newer_chunked_one(datasets, chunked):
    key = "datasets/x/all.zip"
    etag = datasets.upload(key, make_zip(members()))
    assert datasets.register(key, None, sequencer="0055AED6DCD90281E6")["status"] == "registering"
    run([body for _, body, _ in queued(datasets.resources)])
    assert store.get_dataset("x")["images"] == 5

    late = datasets.register(key, None, sequencer="0055AED6DCD90281E5")  # a late event of an earlier upload
    assert late["status"] == "superseded" and queued(datasets.resources) == []
    assert etag == datasets.resources.table.get_item(Key={"pk": "DATASET#x", "sk": f"SOURCE#{key}"})["Item"]["etag"]


def test_chunks_are_cut_by_expanded_bytes_too(datasets, settings_env):
    images = {f"cat/{n}.png": png(n) for n in range(5)}
    settings_env(ARCHIVE_CHUNK_BYTES=str(max(map(len, images.values())) * 2))
    outcome = datasets.register("datasets/x/all.zip", make_zip(images))
    assert outcome["status"] == "registering" and 3 <= outcome["chunks"] <= 5
    run([body for _, body, _ in queued(datasets.resources)])
    assert store.get_dataset("x")["classes"] == {"cat": 5}


def test_a_replaced_chunked_upload_leaves_no_chunk_results_behind(datasets, chunked):
    key = "datasets/x/all.zip"
    for first in (0, 10):
        datasets.register(key, make_zip({f"cat/{n}.png": png(first + n) for n in range(5)}))
        run([body for _, body, _ in queued(datasets.resources)])
    listing = datasets.resources.s3.list_objects_v2(Bucket=datasets.resources.artifact_bucket,
                                                    Prefix=keys.source_result_key("x", key).removesuffix(".json"))
    source = datasets.resources.table.get_item(Key={"pk": "DATASET#x", "sk": f"SOURCE#{key}"})["Item"]
    assert sorted(item["Key"] for item in listing["Contents"]) == sorted(source["result_keys"])
    assert store.get_dataset("x")["images"] == 5
