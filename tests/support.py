"""Helpers shared by the tests (importable as ``support``: pytest puts tests/ on the path)."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace


EVENTS = Path(__file__).parent / "events"

TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "TABLE_NAME": "sightline-test",
    "DATA_BUCKET": "sightline-test-data",
    "ARTIFACT_BUCKET": "sightline-test-artifacts",
    "EVENT_BUS_NAME": "sightline-test-bus",
    "TRAINING_STATE_MACHINE_ARN": "arn:aws:states:us-east-1:123456789012:stateMachine:sightline-test-train",
    "POWERTOOLS_SERVICE_NAME": "sightline-test",
    "POWERTOOLS_METRICS_NAMESPACE": "SightlineTest",
}


def load_event(name: str) -> dict:
    """A JSON event fixture from ``tests/events``."""
    return json.loads((EVENTS / name).read_text())


def create_resources() -> SimpleNamespace:
    """The table, buckets and bus the template declares, created in the active moto mock."""
    import boto3

    dynamodb = boto3.client("dynamodb")
    dynamodb.create_table(
        TableName=TEST_ENV["TABLE_NAME"],
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": name, "AttributeType": "S"} for name in ("pk", "sk", "gsi1pk", "gsi1sk")
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "gsi1",
                "KeySchema": [
                    {"AttributeName": "gsi1pk", "KeyType": "HASH"},
                    {"AttributeName": "gsi1sk", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )
    s3 = boto3.client("s3")
    for bucket in (TEST_ENV["DATA_BUCKET"], TEST_ENV["ARTIFACT_BUCKET"]):
        s3.create_bucket(Bucket=bucket)
    boto3.client("events").create_event_bus(Name=TEST_ENV["EVENT_BUS_NAME"])
    return SimpleNamespace(
        s3=s3,
        dynamodb=dynamodb,
        table=boto3.resource("dynamodb").Table(TEST_ENV["TABLE_NAME"]),
        data_bucket=TEST_ENV["DATA_BUCKET"],
        artifact_bucket=TEST_ENV["ARTIFACT_BUCKET"],
    )




def create_training_state_machine() -> str:
    """A stand-in for the training state machine at ``TRAINING_STATE_MACHINE_ARN`` (one Pass state), in moto."""
    import boto3

    definition = {"StartAt": "Noop", "States": {"Noop": {"Type": "Pass", "End": True}}}
    return boto3.client("stepfunctions").create_state_machine(
        name=TEST_ENV["TRAINING_STATE_MACHINE_ARN"].rsplit(":", 1)[1],
        definition=json.dumps(definition),
        roleArn="arn:aws:iam::123456789012:role/sightline-test-train",
    )["stateMachineArn"]
