"""The local stack's Distributed Map: moto's interpreter runs a definition with an ItemBatcher over a paginated
S3 listing, as AWS does."""
from __future__ import annotations

import json
import time

import boto3
import pytest

from sightline_local import distributed_map


def test_items_are_cut_by_count_and_bytes_with_the_evaluated_batch_input():
    items = [{"Key": f"k{n}", "Size": n} for n in range(5)]
    batcher = {"MaxItemsPerBatch": 2, "BatchInput": {"job.$": "$.job", "fixed": 1, "nested": {"prefix.$": "$.p"}}}
    cut = distributed_map.batches(items, batcher, {"job": "j1", "p": "in/"})
    assert [[item["Key"] for item in batch["Items"]] for batch in cut] == [["k0", "k1"], ["k2", "k3"], ["k4"]]
    assert cut[0]["BatchInput"] == {"job": "j1", "fixed": 1, "nested": {"prefix": "in/"}}
    by_bytes = distributed_map.batches(items, {"MaxInputBytesPerBatch": 40}, {})
    assert [len(batch["Items"]) for batch in by_bytes] == [1, 1, 1, 1, 1]
    assert distributed_map.batches([], batcher, {"job": "j", "p": ""}) == []


def test_the_batcher_is_taken_out_of_top_level_map_states():
    document = {"States": {"M": {"Type": "Map", "ItemBatcher": {"MaxItemsPerBatch": 3},
                                 "ToleratedFailurePercentage": 5}, "P": {"Type": "Pass"}}}
    assert distributed_map.strip_item_batchers(document) == {"M": {"MaxItemsPerBatch": 3}}
    assert "ItemBatcher" not in document["States"]["M"]
    assert document["States"]["M"]["ToleratedFailurePercentage"] == 5.0


@pytest.fixture
def executing_state_machines():
    from moto.core.config import default_user_config

    distributed_map.install()
    saved = default_user_config["stepfunctions"]["execute_state_machine"]
    default_user_config["stepfunctions"]["execute_state_machine"] = True
    yield
    default_user_config["stepfunctions"]["execute_state_machine"] = saved


def test_moto_runs_a_batched_map_over_every_page_of_the_listing(aws_resources, executing_state_machines):
    for n in range(1003):  # more than one ListObjectsV2 page
        aws_resources.s3.put_object(Bucket=aws_resources.data_bucket, Key=f"in/{n:04d}", Body=b"")
    definition = {"StartAt": "M", "States": {"M": {
        "Type": "Map",
        "ItemReader": {"Resource": "arn:aws:states:::s3:listObjectsV2",
                       "Parameters": {"Bucket.$": "$.bucket", "Prefix.$": "$.prefix"}},
        "ItemBatcher": {"MaxItemsPerBatch": 500, "BatchInput": {"prefix.$": "$.prefix"}},
        "ToleratedFailurePercentage": 5,
        "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                          "StartAt": "Count", "States": {"Count": {
                              "Type": "Pass", "Parameters": {"prefix.$": "$.BatchInput.prefix",
                                                             "items.$": "States.ArrayLength($.Items)",
                                                             "keys.$": "$.Items[*].Key"}, "End": True}}},
        "End": True}}}
    sfn = boto3.client("stepfunctions")
    arn = sfn.create_state_machine(name="batched", definition=json.dumps(definition),
                                   roleArn="arn:aws:iam::123456789012:role/sightline-test")["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=arn, input=json.dumps(
        {"bucket": aws_resources.data_bucket, "prefix": "in/"}))["executionArn"]
    deadline = time.monotonic() + 60
    while (described := sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert described["status"] == "SUCCEEDED", described
    batches = json.loads(described["output"])
    assert [(batch["prefix"], batch["items"]) for batch in batches] == [("in/", 500), ("in/", 500), ("in/", 3)]
    assert [key for batch in batches for key in batch["keys"]] == [f"in/{n:04d}" for n in range(1003)]
