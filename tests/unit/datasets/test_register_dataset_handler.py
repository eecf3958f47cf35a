"""The register function reads batches of queued S3 notifications: every object registered on its own, each
dataset recomputed once per batch, and only the messages that hit throttling reported back for redelivery."""
from __future__ import annotations

import copy
import json

import pytest
from botocore.exceptions import ClientError

from sightline.datasets import store
from sightline.datasets.notifications import object_notifications
from support import LambdaContext, intercept_aws, load_event, load_function, png

CONTEXT = LambdaContext()


@pytest.fixture
def register_function():
    return load_function("register_dataset")


def _with_etags(event: dict, etags: dict[str, str]) -> dict:
    """An S3 event's records, with the ETags of what the test actually uploaded."""
    for record in event["Records"]:
        obj = record["s3"]["object"]
        for key, etag in etags.items():
            if obj["key"] == key:
                obj["eTag"] = etag
    return event


def sqs_batch(*bodies: dict) -> dict:
    """An SQS batch as the event source mapping delivers it, one message per notification body."""
    template = load_event("sqs_s3_notification.json")["Records"][0]
    records = []
    for number, body in enumerate(bodies, start=1):
        record = copy.deepcopy(template)
        record["messageId"], record["body"] = f"message-{number}", json.dumps(body)
        records.append(record)
    return {"Records": records}


def test_the_fixture_is_an_s3_notification_in_an_sqs_message():
    [notification] = list(object_notifications(load_event("sqs_s3_notification.json")))
    assert notification.key == "datasets/pets/cat/fluffy cat (1).png"


def test_url_encoded_key_with_spaces(datasets, register_function):
    etag = datasets.upload("datasets/pets/cat/fluffy cat (1).png", png(1))
    event = sqs_batch(_with_etags(load_event("s3_object_created.json"), {"datasets/pets/cat/fluffy+cat+%281%29.png": etag}))

    assert register_function.handler(event, CONTEXT) == {"batchItemFailures": []}
    assert store.get_dataset("pets")["classes"] == {"cat": 1}


def test_duplicate_delivery_is_a_no_op(datasets, register_function):
    etag = datasets.upload("datasets/pets/cat/fluffy cat (1).png", png(1))
    event = sqs_batch(_with_etags(load_event("s3_object_created.json"), {"datasets/pets/cat/fluffy+cat+%281%29.png": etag}))

    register_function.handler(event, CONTEXT)
    before = store.get_dataset("pets")
    assert register_function.handler(event, CONTEXT) == {"batchItemFailures": []}

    after = store.get_dataset("pets")
    assert {k: v for k, v in after.items() if k != "updated_at"} == {k: v for k, v in before.items() if k != "updated_at"}


def test_several_records_bad_ones_do_not_stop_the_others(datasets, register_function):
    etags = {
        "datasets/pets/cat/good.png": datasets.upload("datasets/pets/cat/good.png", png(1)),
        "datasets/pets/dog/broken.jpg": datasets.upload("datasets/pets/dog/broken.jpg", b"not an image at all"),
        "datasets/pets/readme.txt": datasets.upload("datasets/pets/readme.txt", b"hello"),
        "uploads/stray.png": datasets.upload("uploads/stray.png", png(2)),
    }
    event = sqs_batch(_with_etags(load_event("s3_object_created_multiple.json"), etags))

    assert register_function.handler(event, CONTEXT) == {"batchItemFailures": []}
    dataset = store.get_dataset("pets")
    assert dataset["images"] == 1
    assert {issue["key"] for issue in dataset["issues"]} == {"datasets/pets/dog/broken.jpg", "datasets/pets/readme.txt"}


def test_a_throttled_message_alone_is_reported_for_redelivery(datasets, register_function, monkeypatch):
    etags = {
        "datasets/pets/cat/good.png": datasets.upload("datasets/pets/cat/good.png", png(1)),
        "datasets/pets/dog/broken.jpg": datasets.upload("datasets/pets/dog/broken.jpg", png(2)),
    }
    records = _with_etags(load_event("s3_object_created_multiple.json"), etags)["Records"][:2]
    event = sqs_batch({"Records": [records[0]]}, {"Records": [records[1]]})

    def throttled_for_dog(put_item, **kwargs):
        if "/dog/" in kwargs["Item"].get("sk", ""):
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}, "PutItem")
        return put_item(**kwargs)

    def throttled_with_dog(transact_write_items, **kwargs):
        if "/dog/" in json.dumps(kwargs["TransactItems"]):
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "TransactWriteItems")
        return transact_write_items(**kwargs)

    # The batch's source items are written in one transaction; throttled as a whole, they are written one by one.
    intercept_aws(monkeypatch, "dynamodb", "transact_write_items", throttled_with_dog)
    intercept_aws(monkeypatch, "table", "put_item", throttled_for_dog)

    assert register_function.handler(event, CONTEXT) == {"batchItemFailures": [{"itemIdentifier": "message-2"}]}
    assert store.get_dataset("pets")["images"] == 1  # the other message registered, and the dataset was recomputed


def test_unexpected_non_retryable_error_is_logged_not_retried(datasets, register_function, monkeypatch):
    def denied(get_object, **kwargs):
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "GetObject")

    datasets.upload("datasets/pets/cat/fluffy cat (1).png", png(1))
    intercept_aws(monkeypatch, "s3", "get_object", denied)

    assert register_function.handler(sqs_batch(load_event("s3_object_created.json")), CONTEXT) == {"batchItemFailures": []}
    assert store.get_dataset("pets") is None


def test_a_batch_of_uploads_recomputes_its_dataset_once(datasets, register_function, monkeypatch):
    bodies = []
    for number in range(20):
        key = f"datasets/bulk/cat/{number}.png"
        event = load_event("s3_object_created.json")
        event["Records"][0]["s3"]["object"].update(key=key, eTag=datasets.upload(key, png(number)), sequencer=None)
        bodies.append(event)
    published: list[str] = []

    def count(put_events, **kwargs):
        published.extend(entry["DetailType"] for entry in kwargs["Entries"])
        return put_events(**kwargs)

    intercept_aws(monkeypatch, "events", "put_events", count)

    assert register_function.handler(sqs_batch(*bodies), CONTEXT) == {"batchItemFailures": []}
    assert store.get_dataset("bulk")["images"] == 20
    assert published == ["DatasetUpdated"]


def test_a_throttled_recompute_sends_the_whole_batch_back(datasets, register_function, monkeypatch):
    etag = datasets.upload("datasets/pets/cat/fluffy cat (1).png", png(1))
    event = sqs_batch(_with_etags(load_event("s3_object_created.json"), {"datasets/pets/cat/fluffy+cat+%281%29.png": etag}))

    throttling = [True]

    def throttled(update_item, **kwargs):
        if throttling[0]:
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "UpdateItem")
        return update_item(**kwargs)

    intercept_aws(monkeypatch, "table", "update_item", throttled)
    with pytest.raises(Exception, match="recompute of pets hit throttling"):
        register_function.handler(event, CONTEXT)
    assert store.get_dataset("pets") is None

    # Redelivered: the object is unchanged, and the recompute it missed now happens.
    throttling[0] = False
    assert register_function.handler(event, CONTEXT) == {"batchItemFailures": []}
    assert store.get_dataset("pets")["classes"] == {"cat": 1}


def test_eventbridge_object_created_in_a_queue(datasets, register_function):
    event = load_event("s3_object_created_eventbridge.json")
    event["detail"]["object"]["etag"] = datasets.upload("datasets/pets/dog/rex at the beach.png", png(3))

    assert register_function.handler(sqs_batch(event), CONTEXT) == {"batchItemFailures": []}
    assert store.get_dataset("pets")["classes"] == {"dog": 1}


def test_s3_test_event_reports_nothing(aws_resources, register_function):
    event = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2026-11-22T05:00:00.000Z",
             "Bucket": "sightline-test-data", "RequestId": "5582815E1AEA5ADF", "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE"}

    assert register_function.handler(sqs_batch(event), CONTEXT) == {"batchItemFailures": []}
    assert store.list_dataset_summaries() == ([], None)


def test_a_message_that_is_not_json_is_dropped_not_retried(aws_resources, register_function):
    event = sqs_batch({})
    event["Records"][0]["body"] = "not json"
    assert register_function.handler(event, CONTEXT) == {"batchItemFailures": []}


def test_removed_object_leaves_the_dataset(datasets, register_function):
    datasets.register("datasets/pets/cat/keep.png", png(1))
    datasets.register("datasets/pets/cat/fluffy cat (1).png", png(2))
    datasets.resources.s3.delete_object(Bucket=datasets.resources.data_bucket, Key="datasets/pets/cat/fluffy cat (1).png")
    event = load_event("s3_object_created.json")
    event["Records"][0]["eventName"] = "ObjectRemoved:Delete"

    assert register_function.handler(sqs_batch(event), CONTEXT) == {"batchItemFailures": []}
    assert store.get_dataset("pets")["images"] == 1


def test_notifications_wrapped_in_sqs_or_sns_are_unwrapped():
    inner = load_event("s3_object_created.json")
    sqs = {"Records": [{"eventSource": "aws:sqs", "messageId": "m1", "body": json.dumps(inner)}]}
    sns = {"Records": [{"EventSource": "aws:sns", "Sns": {"Message": json.dumps(inner)}}]}

    for event in (inner, sqs, sns):
        [notification] = list(object_notifications(event))
        assert notification.key == "datasets/pets/cat/fluffy cat (1).png"
        assert notification.sequencer == "0055AED6DCD90281E5"
