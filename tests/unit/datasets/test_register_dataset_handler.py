from __future__ import annotations

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
    """The fixture's records, with the ETags of what the test actually uploaded."""
    for record in event["Records"]:
        obj = record["s3"]["object"]
        for key, etag in etags.items():
            if obj["key"] == key:
                obj["eTag"] = etag
    return event


def test_url_encoded_key_with_spaces(datasets, register_function):
    etag = datasets.upload("datasets/pets/cat/fluffy cat (1).png", png(1))
    event = _with_etags(load_event("s3_object_created.json"), {"datasets/pets/cat/fluffy+cat+%281%29.png": etag})

    result = register_function.handler(event, CONTEXT)

    assert result["results"][0]["key"] == "datasets/pets/cat/fluffy cat (1).png"
    assert result["results"][0]["status"] == "registered"
    assert store.get_dataset("pets")["classes"] == {"cat": 1}


def test_duplicate_delivery_is_a_no_op(datasets, register_function):
    etag = datasets.upload("datasets/pets/cat/fluffy cat (1).png", png(1))
    event = _with_etags(load_event("s3_object_created.json"), {"datasets/pets/cat/fluffy+cat+%281%29.png": etag})

    register_function.handler(event, CONTEXT)
    before = store.get_dataset("pets")
    again = register_function.handler(event, CONTEXT)

    assert again["results"][0]["status"] == "unchanged"
    after = store.get_dataset("pets")
    assert {k: v for k, v in after.items() if k != "updated_at"} == {k: v for k, v in before.items() if k != "updated_at"}


def test_several_records_bad_ones_do_not_stop_the_others(datasets, register_function):
    etags = {
        "datasets/pets/cat/good.png": datasets.upload("datasets/pets/cat/good.png", png(1)),
        "datasets/pets/dog/broken.jpg": datasets.upload("datasets/pets/dog/broken.jpg", b"not an image at all"),
        "datasets/pets/readme.txt": datasets.upload("datasets/pets/readme.txt", b"hello"),
        "uploads/stray.png": datasets.upload("uploads/stray.png", png(2)),
    }

    result = register_function.handler(_with_etags(load_event("s3_object_created_multiple.json"), etags), CONTEXT)

    assert [r["status"] for r in result["results"]] == ["registered", "invalid", "invalid", "rejected"]
    dataset = store.get_dataset("pets")
    assert dataset["images"] == 1
    assert {issue["key"] for issue in dataset["issues"]} == {"datasets/pets/dog/broken.jpg", "datasets/pets/readme.txt"}


def test_throttled_record_is_retried_after_the_others(datasets, register_function, monkeypatch):
    etags = {
        "datasets/pets/cat/good.png": datasets.upload("datasets/pets/cat/good.png", png(1)),
        "datasets/pets/dog/broken.jpg": datasets.upload("datasets/pets/dog/broken.jpg", png(2)),
    }
    event = _with_etags(load_event("s3_object_created_multiple.json"), etags)
    event["Records"] = event["Records"][:2]

    def throttled_for_dog(put_item, **kwargs):
        if "/dog/" in kwargs["Item"].get("sk", ""):
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}, "PutItem")
        return put_item(**kwargs)

    intercept_aws(monkeypatch, "table", "put_item", throttled_for_dog)

    with pytest.raises(register_function.RetryableRegistrationError, match="datasets/pets/dog/broken.jpg"):
        register_function.handler(event, CONTEXT)
    assert store.get_dataset("pets")["images"] == 1  # the other record was registered before the retry


def test_unexpected_non_retryable_error_is_logged_not_raised(datasets, register_function, monkeypatch):
    def denied(head_object, **kwargs):
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "HeadObject")

    intercept_aws(monkeypatch, "s3", "head_object", denied)
    event = _with_etags(load_event("s3_object_created.json"), {})

    result = register_function.handler(event, CONTEXT)

    assert result["results"][0]["status"] == "failed"


def test_eventbridge_object_created(datasets, register_function):
    event = load_event("s3_object_created_eventbridge.json")
    event["detail"]["object"]["etag"] = datasets.upload("datasets/pets/dog/rex at the beach.png", png(3))

    result = register_function.handler(event, CONTEXT)

    assert result["results"][0]["status"] == "registered"
    assert store.get_dataset("pets")["classes"] == {"dog": 1}


def test_s3_test_event_reports_nothing(aws_resources, register_function):
    event = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2026-11-22T05:00:00.000Z",
             "Bucket": "sightline-test-data", "RequestId": "5582815E1AEA5ADF", "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE"}

    assert register_function.handler(event, CONTEXT) == {"results": []}


def test_removed_object_leaves_the_dataset(datasets, register_function):
    datasets.register("datasets/pets/cat/keep.png", png(1))
    datasets.register("datasets/pets/cat/fluffy cat (1).png", png(2))
    datasets.resources.s3.delete_object(Bucket=datasets.resources.data_bucket, Key="datasets/pets/cat/fluffy cat (1).png")
    event = load_event("s3_object_created.json")
    event["Records"][0]["eventName"] = "ObjectRemoved:Delete"

    result = register_function.handler(event, CONTEXT)

    assert result["results"][0]["status"] == "removed"
    assert store.get_dataset("pets")["images"] == 1


def test_notifications_wrapped_in_sqs_or_sns_are_unwrapped():
    inner = load_event("s3_object_created.json")
    sqs = {"Records": [{"eventSource": "aws:sqs", "messageId": "m1", "body": json.dumps(inner)}]}
    sns = {"Records": [{"EventSource": "aws:sns", "Sns": {"Message": json.dumps(inner)}}]}

    for event in (inner, sqs, sns):
        [notification] = list(object_notifications(event))
        assert notification.key == "datasets/pets/cat/fluffy cat (1).png"
        assert notification.sequencer == "0055AED6DCD90281E5"
