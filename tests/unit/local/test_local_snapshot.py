"""The local stack's snapshot: written from moto, restored into a fresh moto with every version id, with no S3
notification, in-flight work settled, scoped keys' usage keys back, and refusals that say what to do."""
from __future__ import annotations

import json
import os

import boto3
import pytest
from moto import mock_aws

from sightline_local import snapshot
from sightline_local.stack import changes_state

ACCOUNT = "123456789012"
BUCKET = "sightline-data-123456789012-us-east-1"
TABLE = "sightline-table"


def create_stack_resources(queue: bool = True) -> dict:
    """A versioned bucket whose datasets/ uploads notify a queue (as the template's), and the table."""
    s3, dynamodb, sqs = boto3.client("s3"), boto3.client("dynamodb"), boto3.client("sqs")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    url = sqs.create_queue(QueueName="dataset-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    if queue:
        s3.put_bucket_notification_configuration(Bucket=BUCKET, NotificationConfiguration={"QueueConfigurations": [
            {"QueueArn": arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}]})
        sqs.purge_queue(QueueUrl=url)  # S3's s3:TestEvent of the new configuration
    dynamodb.create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST",
                          AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                                {"AttributeName": "sk", "AttributeType": "S"}],
                          KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                     {"AttributeName": "sk", "KeyType": "RANGE"}])
    return {"s3": s3, "dynamodb": dynamodb, "sqs": sqs, "queue_url": url}


def drain(sqs, url) -> list:
    return sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])


def writer(state_dir, dynamodb, key="stack-key-0123456789abcdef") -> snapshot.SnapshotWriter:
    return snapshot.SnapshotWriter(state_dir, ACCOUNT, {"DataBucket": BUCKET}, {"SightlineTable": TABLE}, dynamodb, key)


def restore(state_dir, aws, document=None, usage_plan_id=None) -> snapshot.Summary:
    return snapshot.restore(state_dir, document or snapshot.load(state_dir), account_id=ACCOUNT,
                            buckets={"DataBucket": BUCKET}, tables={"SightlineTable": TABLE},
                            dynamodb=aws["dynamodb"], apigateway=boto3.client("apigateway"),
                            usage_plan_id=usage_plan_id)


def versions_of(s3) -> list[tuple]:
    listing = s3.list_object_versions(Bucket=BUCKET)
    found = [(v["Key"], v["VersionId"], v["IsLatest"], v["ETag"]) for v in listing.get("Versions", [])]
    found += [(m["Key"], m["VersionId"], m["IsLatest"], "marker") for m in listing.get("DeleteMarkers", [])]
    return sorted(found)


ITEMS = [
    {"pk": {"S": "DATASET#pets"}, "sk": {"S": "META"}, "status": {"S": "ready"}, "images": {"N": "11"},
     "tasks": {"L": [{"S": "classification"}]}, "duplicates": {"M": {"count": {"N": "0"}, "B": {"S": "a field"}}}},
    {"pk": {"S": "DATASET#pets"}, "sk": {"S": "BLOB"}, "raw": {"B": b"\x00\xffbinary"},
     "set": {"BS": [b"a", b"b"]}, "nested": {"M": {"inner": {"B": b"\x01"}}}},
    {"pk": {"S": "MODEL#mdl-1"}, "sk": {"S": "META"}, "status": {"S": "ready"}, "serving_version": {"N": "1"}},
]


def test_a_round_trip_keeps_every_version_id_the_items_and_fires_no_notification(tmp_path):
    with mock_aws():
        aws = create_stack_resources()
        s3 = aws["s3"]
        original = s3.put_object(Bucket=BUCKET, Key="datasets/pets/a.png", Body=b"first", ContentType="image/png",
                                 Metadata={"origin": "camera"})["VersionId"]
        pinned = s3.put_object(Bucket=BUCKET, Key="datasets/pets/a.png", Body=b"second")["VersionId"]
        s3.put_object(Bucket=BUCKET, Key="datasets/pets/gone.png", Body=b"deleted later")
        s3.delete_object(Bucket=BUCKET, Key="datasets/pets/gone.png")
        s3.put_object(Bucket=BUCKET, Key="models/m/v1/model.onnx", Body=b"\x00" * 5000)
        for item in ITEMS:
            aws["dynamodb"].put_item(TableName=TABLE, Item=item)
        before = versions_of(s3)
        written = writer(tmp_path, aws["dynamodb"]).write()
        assert (written.objects, written.versions, written.items) == (3, 5, 3)
        assert (written.datasets, written.models) == (1, 1)

    with mock_aws():  # a new, empty moto: the next start
        aws = create_stack_resources()
        restored = restore(tmp_path, aws)
        s3 = aws["s3"]
        assert versions_of(s3) == before
        assert s3.get_object(Bucket=BUCKET, Key="datasets/pets/a.png", VersionId=pinned)["Body"].read() == b"second"
        first = s3.get_object(Bucket=BUCKET, Key="datasets/pets/a.png", VersionId=original)
        assert first["Body"].read() == b"first"
        assert first["ContentType"] == "image/png" and first["Metadata"] == {"origin": "camera"}
        assert s3.list_objects_v2(Bucket=BUCKET, Prefix="datasets/pets/gone")["KeyCount"] == 0
        items = aws["dynamodb"].scan(TableName=TABLE)["Items"]
        assert sorted(items, key=lambda i: (i["pk"]["S"], i["sk"]["S"])) == sorted(
            ITEMS, key=lambda i: (i["pk"]["S"], i["sk"]["S"]))
        assert drain(aws["sqs"], aws["queue_url"]) == []  # no ObjectCreated for 5 restored versions
        assert restored.objects == 3 and restored.notes == []
        # A new upload after the restore still notifies: only the restore was silent.
        s3.put_object(Bucket=BUCKET, Key="datasets/pets/new.png", Body=b"new")
        assert len(drain(aws["sqs"], aws["queue_url"])) == 1


def test_a_second_snapshot_writes_only_new_bodies_and_drops_bodies_nothing_names(tmp_path):
    with mock_aws():
        aws = create_stack_resources(queue=False)
        aws["s3"].put_object(Bucket=BUCKET, Key="keep", Body=b"kept")
        aws["s3"].put_object(Bucket=BUCKET, Key="scratch", Body=b"scratch")
        writing = writer(tmp_path, aws["dynamodb"])
        assert writing.write().new_blobs == 2
        assert writing.write().new_blobs == 0  # nothing changed: nothing rewritten
        aws["s3"].delete_objects(Bucket=BUCKET, Delete={"Objects": [
            {"Key": "scratch", "VersionId": v["VersionId"]}
            for v in aws["s3"].list_object_versions(Bucket=BUCKET, Prefix="scratch")["Versions"]]})
        writing.write()
        blobs = [path.name for path in (tmp_path / "snapshot" / "blobs").rglob("*") if path.is_file()]
        assert len(blobs) == 1
        assert (tmp_path / "snapshot" / "snapshot.json").stat().st_mode & 0o777 == 0o600
        assert (tmp_path / "snapshot").stat().st_mode & 0o777 == 0o700


def test_a_snapshot_that_fails_midway_leaves_the_previous_one_whole(tmp_path, monkeypatch):
    with mock_aws():
        aws = create_stack_resources(queue=False)
        aws["s3"].put_object(Bucket=BUCKET, Key="first", Body=b"first")
        writing = writer(tmp_path, aws["dynamodb"])
        writing.write()
        manifest = tmp_path / "snapshot" / "snapshot.json"
        previous = manifest.read_bytes()
        aws["s3"].put_object(Bucket=BUCKET, Key="second", Body=b"second")

        def crash(*args, **kwargs):
            raise OSError("disk full")

        real_replace = os.replace

        def replace(source, target):
            if str(target).endswith("snapshot.json"):
                crash()
            real_replace(source, target)

        monkeypatch.setattr(os, "replace", replace)
        with pytest.raises(OSError, match="disk full"):
            writing.write()
        assert manifest.read_bytes() == previous
        assert not [p for p in manifest.parent.iterdir() if p.name.endswith(".tmp")]
        monkeypatch.setattr(os, "replace", real_replace)

    with mock_aws():
        aws = create_stack_resources(queue=False)
        restore(tmp_path, aws)  # the previous snapshot: its blob was not collected by the failed write
        assert aws["s3"].get_object(Bucket=BUCKET, Key="first")["Body"].read() == b"first"
        assert aws["s3"].list_objects_v2(Bucket=BUCKET, Prefix="second")["KeyCount"] == 0


def test_another_format_is_refused_with_what_to_do_and_left_in_place(tmp_path):
    folder = tmp_path / "snapshot"
    folder.mkdir()
    (folder / "snapshot.json").write_text(json.dumps({"format": "sightline.local-snapshot/v0", "buckets": {}}))
    with pytest.raises(snapshot.SnapshotFormatError) as refused:
        snapshot.load(tmp_path)
    message = str(refused.value)
    assert "'sightline.local-snapshot/v0'" in message and snapshot.FORMAT in message and "--fresh" in message
    assert (folder / "snapshot.json").exists()

    (folder / "snapshot.json").write_text("{not json")
    with pytest.raises(snapshot.SnapshotError, match="cannot be read"):
        snapshot.load(tmp_path)
    assert snapshot.load(tmp_path / "elsewhere") is None


def test_a_missing_body_is_named_and_a_bucket_the_template_lost_is_refused(tmp_path):
    with mock_aws():
        aws = create_stack_resources(queue=False)
        aws["s3"].put_object(Bucket=BUCKET, Key="datasets/x/a.png", Body=b"a")
        writer(tmp_path, aws["dynamodb"]).write()
    document = snapshot.load(tmp_path)
    with mock_aws():
        aws = create_stack_resources(queue=False)
        with pytest.raises(snapshot.SnapshotError, match="OldBucket, which the template no longer declares"):
            restore(tmp_path, aws, {**document, "buckets": {**document["buckets"], "OldBucket": {}}})
        for path in (tmp_path / "snapshot" / "blobs").rglob("*"):
            if path.is_file():
                path.unlink()
        with pytest.raises(snapshot.SnapshotError, match=r"s3://.*/datasets/x/a.png .* is missing"):
            restore(tmp_path, aws)


def test_discard_sets_the_snapshot_aside_replacing_an_older_discarded_one(tmp_path):
    assert snapshot.discard(tmp_path) is None
    for content in ("older", "newer"):
        (tmp_path / "snapshot").mkdir()
        (tmp_path / "snapshot" / "snapshot.json").write_text(content)
        assert snapshot.discard(tmp_path) == tmp_path / "snapshot.discarded"
    assert not (tmp_path / "snapshot").exists()
    assert (tmp_path / "snapshot.discarded" / "snapshot.json").read_text() == "newer"


def item(pk, sk, **attributes):
    typed = {"pk": {"S": pk}, "sk": {"S": sk}}
    for name, value in attributes.items():
        typed[name] = {"N": str(value)} if isinstance(value, int) else {"S": value} if isinstance(value, str) else value
    return typed


def test_work_in_flight_is_settled_failed_and_nothing_is_left_to_start():
    items = [
        item("MODEL#new", "META", status="training", latest_version=1),
        item("MODEL#new", "VERSION#000001", status="training", version=1),
        item("MODEL#served", "META", status="ready", serving_version=1, latest_version=2,
             pending_version={"M": {"template": {"S": "x"}}}),
        item("MODEL#served", "VERSION#000001", status="ready", version=1),
        item("MODEL#served", "VERSION#000002", status="training", version=2),
        item("MODEL#waiting", "META", status="ready", serving_version=1,
             retrain_debounce={"M": {"token": {"S": "t"}}}),
        item("EVALUATION#e1", "META", status="running"),
        item("EVALUATION#e2", "META", status="succeeded"),
        item("BATCHPREDICTION#b1", "META", status="running"),
    ]
    notes = snapshot.settle_interrupted(items, "2024-01-01T00:00:00.000000Z")
    by_key = {(i["pk"]["S"], i["sk"]["S"]): i for i in items}
    new_version = by_key[("MODEL#new", "VERSION#000001")]
    assert new_version["status"] == {"S": "failed"} and new_version["failure_reason"] == {"S": snapshot.INTERRUPTED}
    assert new_version["finished_at"] == {"S": "2024-01-01T00:00:00.000000Z"}
    assert by_key[("MODEL#new", "META")]["status"] == {"S": "failed"}  # serves nothing
    served = by_key[("MODEL#served", "META")]
    assert served["status"] == {"S": "ready"} and served["failure_reason"] == {"S": snapshot.INTERRUPTED}
    assert "pending_version" not in served
    assert by_key[("MODEL#served", "VERSION#000001")]["status"] == {"S": "ready"}
    assert by_key[("MODEL#served", "VERSION#000002")]["status"] == {"S": "failed"}
    waiting = by_key[("MODEL#waiting", "META")]
    assert "retrain_debounce" not in waiting and "failure_reason" not in waiting
    assert by_key[("EVALUATION#e1", "META")]["status"] == {"S": "failed"}
    assert by_key[("EVALUATION#e2", "META")]["status"] == {"S": "succeeded"}
    assert by_key[("BATCHPREDICTION#b1", "META")]["status"] == {"S": "failed"}
    assert "model new version 1 was training: marked failed" in notes
    assert "evaluation e1 was running: marked failed" in notes
    assert any("served: the version queued" in note for note in notes)
    assert any("waiting: the scheduled (debounced) retraining was dropped" in note for note in notes)
    assert len(notes) == 6


def test_a_training_version_in_the_snapshot_comes_back_failed(tmp_path):
    with mock_aws():
        aws = create_stack_resources(queue=False)
        aws["dynamodb"].put_item(TableName=TABLE, Item=item("MODEL#m", "VERSION#000001", status="training"))
        aws["dynamodb"].put_item(TableName=TABLE, Item=item("MODEL#m", "META", status="training"))
        writer(tmp_path, aws["dynamodb"]).write()
    with mock_aws():
        aws = create_stack_resources(queue=False)
        restored = restore(tmp_path, aws)
        version = aws["dynamodb"].get_item(TableName=TABLE, Key={"pk": {"S": "MODEL#m"},
                                                                 "sk": {"S": "VERSION#000001"}})["Item"]
        assert version["status"] == {"S": "failed"} and "stopped" in version["failure_reason"]["S"]
        assert restored.notes == ["model m version 1 was training: marked failed"]


def test_scoped_keys_get_their_usage_keys_back_in_the_new_plan_and_revoked_ones_do_not(tmp_path):
    value = "usage-value-0123456789abcdefghij"
    with mock_aws():
        aws = create_stack_resources(queue=False)
        for key_id, extra in (("aaaa", {}), ("bbbb", {"revoked_at": "2024-01-01T00:00:00.000000Z"})):
            aws["dynamodb"].put_item(TableName=TABLE, Item=item(
                f"APIKEY#{key_id}", "META", key_id=key_id, usage_plan_id="old-plan", usage_key_id="old-key",
                usage_key_value=value + key_id, **extra))
        writer(tmp_path, aws["dynamodb"]).write()
    with mock_aws():
        aws = create_stack_resources(queue=False)
        apigateway = boto3.client("apigateway")
        plan = apigateway.create_usage_plan(name="plan")["id"]
        restored = restore(tmp_path, aws, usage_plan_id=plan)
        keys = apigateway.get_api_keys(includeValues=True)["items"]
        assert [(k["name"], k["value"]) for k in keys] == [("sightline-scoped-aaaa", value + "aaaa")]
        assert [k["id"] for k in apigateway.get_usage_plan_keys(usagePlanId=plan)["items"]] == [keys[0]["id"]]
        active = aws["dynamodb"].get_item(TableName=TABLE, Key={"pk": {"S": "APIKEY#aaaa"}, "sk": {"S": "META"}})
        assert active["Item"]["usage_plan_id"] == {"S": plan} and active["Item"]["usage_key_id"] == {"S": keys[0]["id"]}
        revoked = aws["dynamodb"].get_item(TableName=TABLE, Key={"pk": {"S": "APIKEY#bbbb"}, "sk": {"S": "META"}})
        assert revoked["Item"]["usage_key_id"] == {"S": "old-key"}
        assert restored.notes == ["1 scoped API keys restored"]


def test_the_stack_key_is_kept_in_the_snapshot(tmp_path):
    with mock_aws():
        aws = create_stack_resources(queue=False)
        writer(tmp_path, aws["dynamodb"], key="the-stack-key-0123456789").write()
    assert snapshot.load(tmp_path)["stack_key"] == "the-stack-key-0123456789"


def environ(method, **headers):
    return {"REQUEST_METHOD": method, **{f"HTTP_{k.upper()}": v for k, v in headers.items()}}


S3_AUTH = "AWS4-HMAC-SHA256 Credential=sightline-local/20240101/us-east-1/s3/aws4_request, SignedHeaders=host"
SQS_AUTH = S3_AUTH.replace("/s3/", "/sqs/")


@pytest.mark.parametrize(("request_environ", "changes"), [
    (environ("PUT", authorization=S3_AUTH), True),
    (environ("DELETE", authorization=S3_AUTH), True),
    (environ("GET", authorization=S3_AUTH), False),
    (environ("HEAD", authorization=S3_AUTH), False),
    (environ("POST", authorization=SQS_AUTH), False),
    (environ("POST", x_amz_target="DynamoDB_20120810.PutItem"), True),
    (environ("POST", x_amz_target="DynamoDB_20120810.TransactWriteItems"), True),
    (environ("POST", x_amz_target="DynamoDB_20120810.Query"), False),
    (environ("POST", x_amz_target="AmazonSQS.SendMessage"), False),
    ({"REQUEST_METHOD": "PUT", "QUERY_STRING": "X-Amz-Credential=k%2F20240101%2Fus-east-1%2Fs3%2Faws4_request"}, True),
    ({"REQUEST_METHOD": "PUT", "QUERY_STRING": ""}, False),
])
def test_changes_are_counted_for_s3_and_dynamodb_writes_only(request_environ, changes):
    assert changes_state(request_environ) is changes
