"""moto, patched where its costs grow with a table or a queue (``moto_costs``): same outcomes."""
from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError

from sightline_local import moto_costs


@pytest.fixture
def table(aws_resources):
    moto_costs.install()
    return boto3.client("dynamodb"), aws_resources.table.name


def _put(table_name: str, sk: str, value: str, condition: str | None = None) -> dict:
    action = {"TableName": table_name, "Item": {"pk": {"S": "P"}, "sk": {"S": sk}, "v": {"S": value}}}
    if condition:
        action["ConditionExpression"] = condition
    return {"Put": action}


def _items(client, table_name: str) -> dict[str, str]:
    items = client.scan(TableName=table_name)["Items"]
    return {item["sk"]["S"]: item["v"]["S"] for item in items}


def test_a_cancelled_transaction_leaves_every_item_as_it_was(table):
    client, name = table
    client.transact_write_items(TransactItems=[_put(name, "a", "1"), _put(name, "b", "1"), _put(name, "c", "1")])

    with pytest.raises(ClientError, match="TransactionCanceled"):
        client.transact_write_items(TransactItems=[
            _put(name, "a", "2"),  # replaces
            _put(name, "new", "2"),  # creates
            {"Delete": {"TableName": name, "Key": {"pk": {"S": "P"}, "sk": {"S": "b"}}}},
            {"Update": {"TableName": name, "Key": {"pk": {"S": "P"}, "sk": {"S": "c"}},
                        "UpdateExpression": "SET v = :v", "ExpressionAttributeValues": {":v": {"S": "2"}}}},
            _put(name, "d", "2", condition="attribute_exists(sk)"),  # fails: cancels all of the above
        ])

    assert _items(client, name) == {"a": "1", "b": "1", "c": "1"}


def test_a_transaction_whose_conditions_hold_applies_every_action(table):
    client, name = table
    client.transact_write_items(TransactItems=[_put(name, "a", "1")])
    replace = _put(name, "a", "2", condition="v = :one")
    replace["Put"]["ExpressionAttributeValues"] = {":one": {"S": "1"}}
    client.transact_write_items(TransactItems=[replace, _put(name, "b", "2", condition="attribute_not_exists(sk)")])

    assert _items(client, name) == {"a": "2", "b": "2"}


def test_a_receive_still_leaves_out_messages_past_the_queues_retention(aws_resources):
    from moto.sqs.models import sqs_backends

    moto_costs.install()
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName="retained", Attributes={"MessageRetentionPeriod": "60"})["QueueUrl"]
    for body in ("new", "old"):
        sqs.send_message(QueueUrl=url, MessageBody=body)
    queue = sqs_backends["123456789012"]["us-east-1"].get_queue("retained")
    next(m for m in queue._messages if m.body == "old").sent_timestamp -= 120_000  # sent two minutes ago

    received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]

    assert [message["Body"] for message in received] == ["new"]


def test_a_query_on_the_table_reads_its_partition_in_order_and_pages(table):
    client, name = table
    for pk in ("A", "B"):
        for number in range(30):
            client.put_item(TableName=name, Item={"pk": {"S": pk}, "sk": {"S": f"{number:03d}"}, "v": {"S": pk}})
    query = {"TableName": name, "KeyConditionExpression": "pk = :pk AND begins_with(sk, :zero)",
             "ExpressionAttributeValues": {":pk": {"S": "B"}, ":zero": {"S": "0"}}, "Limit": 7}
    found: list[str] = []
    while True:
        page = client.query(**query)
        found += [item["sk"]["S"] for item in page["Items"] if item["v"]["S"] == "B"]
        if "LastEvaluatedKey" not in page:
            break
        query["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    assert found == [f"{number:03d}" for number in range(30)]
    backwards = client.query(TableName=name, KeyConditionExpression="pk = :pk", ScanIndexForward=False,
                             ExpressionAttributeValues={":pk": {"S": "A"}}, Limit=2)["Items"]
    assert [item["sk"]["S"] for item in backwards] == ["029", "028"]
    assert client.scan(TableName=name)["Count"] == 60  # a scan still sees the whole table


def test_every_kind_of_attribute_value_comes_back_as_it_was_stored(table):
    client, name = table
    item = {"pk": {"S": "P"}, "sk": {"S": "all"}, "s": {"S": ""}, "n": {"N": "1.5"}, "yes": {"BOOL": True},
            "none": {"NULL": True}, "ss": {"SS": ["a", "b"]}, "ns": {"NS": ["1", "2"]}, "b": {"B": b"\x00\x01"},
            "bs": {"BS": [b"\x02"]}, "m": {"M": {"inner": {"L": [{"S": "x"}, {"N": "2"}, {"M": {}}, {"B": b"\x03"}]}}}}
    client.put_item(TableName=name, Item=item)

    got = client.get_item(TableName=name, Key={"pk": {"S": "P"}, "sk": {"S": "all"}})["Item"]
    queried = client.query(TableName=name, KeyConditionExpression="pk = :pk",
                           ExpressionAttributeValues={":pk": {"S": "P"}})["Items"]

    for answer in (got, queried[0]):
        assert {k: v for k, v in answer.items() if k not in ("ss", "ns")} == {
            k: v for k, v in item.items() if k not in ("ss", "ns")}
        assert sorted(answer["ss"]["SS"]) == ["a", "b"] and sorted(answer["ns"]["NS"]) == ["1", "2"]


def test_moto_finds_its_services_from_a_list_read_once():
    from moto import backends

    before = list(backends.list_of_moto_modules())
    moto_costs.install()
    assert list(backends.list_of_moto_modules()) == list(backends.list_of_moto_modules()) == before
    assert "s3" in before and "dynamodb" in before


def test_sends_keep_fifo_content_deduplication_and_the_queues_counts(aws_resources):
    moto_costs.install()
    sqs = boto3.client("sqs")
    fifo = sqs.create_queue(QueueName="dedupe.fifo", Attributes={"FifoQueue": "true",
                                                                 "ContentBasedDeduplication": "true"})["QueueUrl"]
    plain = sqs.create_queue(QueueName="plain")["QueueUrl"]
    for _ in range(3):
        sqs.send_message(QueueUrl=fifo, MessageBody="same", MessageGroupId="g")
        sqs.send_message(QueueUrl=plain, MessageBody="same")

    fifo_attributes = sqs.get_queue_attributes(QueueUrl=fifo, AttributeNames=["All"])["Attributes"]
    plain_attributes = sqs.get_queue_attributes(QueueUrl=plain, AttributeNames=["All"])["Attributes"]
    assert fifo_attributes["ApproximateNumberOfMessages"] == "1"  # the same content twice more was deduplicated
    assert fifo_attributes["ContentBasedDeduplication"] == "true"
    assert plain_attributes["ApproximateNumberOfMessages"] == "3"
    assert "ContentBasedDeduplication" not in plain_attributes


def test_a_batch_delete_answers_per_handle_as_moto_does(aws_resources):
    moto_costs.install()
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName="deletes")["QueueUrl"]
    for number in range(4):
        sqs.send_message(QueueUrl=url, MessageBody=str(number))
    first = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0)["Messages"]
    again = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30)["Messages"]
    by_body = {message["Body"]: message["ReceiptHandle"] for message in first}
    newer = {message["Body"]: message["ReceiptHandle"] for message in again}
    sqs.delete_message(QueueUrl=url, ReceiptHandle=newer["3"])

    answer = sqs.delete_message_batch(QueueUrl=url, Entries=[
        {"Id": "old-handle", "ReceiptHandle": by_body["0"]},  # a message's earlier handle still deletes it
        {"Id": "current", "ReceiptHandle": newer["1"]},
        {"Id": "already-deleted", "ReceiptHandle": newer["3"]},
        {"Id": "invalid", "ReceiptHandle": "not-a-handle"},
    ])

    assert sorted(entry["Id"] for entry in answer["Successful"]) == ["already-deleted", "current", "old-handle"]
    assert [(entry["Id"], entry["Code"]) for entry in answer.get("Failed", [])] == [("invalid", "ReceiptHandleIsInvalid")]
    remaining = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"])
    assert remaining["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "1"  # only "2" is left
