"""The local stack's SQS event source mapping: batches as Lambda gathers them, and only the messages the
function reports as failed come back."""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws

from sightline_local.sqs_poller import SqsEventSource, SqsPoller


@dataclass
class Result:
    payload: Any
    error: bool = False


@pytest.fixture
def queue():
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        dead = sqs.create_queue(QueueName="dead")["QueueUrl"]
        dead_arn = sqs.get_queue_attributes(QueueUrl=dead, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        url = sqs.create_queue(QueueName="events", Attributes={
            "VisibilityTimeout": "600",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dead_arn, "maxReceiveCount": 2}),
        })["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        yield sqs, url, arn, dead


def source(url: str, arn: str, *, batch_size: int = 100, window: float = 0.5) -> SqsEventSource:
    return SqsEventSource("uuid-1", "arn:aws:lambda:us-east-1:123456789012:function:register", arn, url,
                          batch_size, window, report_item_failures=True)


def visible(sqs, url: str) -> int:
    return int(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
               ["Attributes"]["ApproximateNumberOfMessages"])


def test_messages_sent_together_arrive_in_one_invocation_in_the_lambda_shape(queue):
    sqs, url, arn, _ = queue
    for number in range(25):
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"n": number}))
    calls: list[dict] = []
    done = threading.Event()

    def invoke(function_arn: str, event: dict) -> Result:
        calls.append(event)
        done.set()
        return Result({"batchItemFailures": []})

    poller = SqsPoller(sqs, invoke, "us-east-1")
    poller.add(source(url, arn))
    try:
        assert done.wait(10)
    finally:
        poller.shutdown()  # returns once the delivery in progress has deleted its messages
    assert len(calls) == 1 and len(calls[0]["Records"]) == 25
    record = calls[0]["Records"][0]
    assert (record["eventSource"], record["eventSourceARN"], record["awsRegion"]) == ("aws:sqs", arn, "us-east-1")
    assert {json.loads(r["body"])["n"] for r in calls[0]["Records"]} == set(range(25))
    assert visible(sqs, url) == 0


def test_only_reported_failures_come_back_and_then_reach_the_dead_letter_queue(queue):
    sqs, url, arn, dead = queue
    for body in ("good", "bad"):
        sqs.send_message(QueueUrl=url, MessageBody=body)
    poller = SqsPoller(sqs, lambda *_: None, "us-east-1")
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    bad = next(m["MessageId"] for m in messages if m["Body"] == "bad")
    poller.invoke = lambda arn_, event: Result({"batchItemFailures": [{"itemIdentifier": bad}]})

    poller.deliver(source(url, arn), messages)

    time.sleep(2.5)  # LOCAL_RETRY_SECONDS
    again = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in again] == ["bad"]
    poller.deliver(source(url, arn), again)  # fails a second time: maxReceiveCount is 2
    time.sleep(2.5)
    assert sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []) == []
    assert [m["Body"] for m in sqs.receive_message(QueueUrl=dead, MaxNumberOfMessages=10)["Messages"]] == ["bad"]


def test_a_function_error_sends_the_whole_batch_back(queue):
    sqs, url, arn, _ = queue
    sqs.send_message(QueueUrl=url, MessageBody="a")
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    poller = SqsPoller(sqs, lambda *_: Result({"errorMessage": "boom"}, error=True), "us-east-1")

    poller.deliver(source(url, arn), messages)

    time.sleep(2.5)
    assert [m["Body"] for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]] == ["a"]
