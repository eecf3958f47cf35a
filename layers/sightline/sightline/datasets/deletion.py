"""Deleting a dataset: ``DELETE /v1/datasets/{name}`` marks it ``deleting`` and queues the work, which the register
function does in steps that each fit one invocation.

What goes: the dataset's uploads under ``datasets/<name>/`` in the data bucket, its source, class, issue, entry
and snapshot-listing items, the parse results kept for its archives and annotation files, and every stored image
(with its thumbnail) that no other dataset and no training snapshot references. Snapshots themselves stay: model
versions trained on them keep their record of what they saw. Every step is idempotent, so a retried or repeated
message finishes the job instead of failing it.
"""
from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools import Logger
from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from sightline import aws, keys, model_registry
from sightline.config import get_settings
from sightline.contract import DATASET_TRANSITIONS, DatasetStatus, states_leading_to
from sightline.datasets import queued_work
from sightline.datasets.paths import DATASETS_PREFIX, is_valid_dataset_name
from sightline.errors import Conflict, NotFound

logger = Logger(child=True)

DELETE_DATASET = "delete-dataset"
# One message deletes for at most this long, then queues its continuation (the function may run 900 s).
STEP_SECONDS = 600
S3_DELETE_BATCH = 1000  # DeleteObjects takes at most 1,000 keys
# A step that ran out of time, or met a recompute still finishing, continues after this pause.
CONTINUE_AFTER_SECONDS = 5


def request_deletion(name: str) -> dict[str, Any]:
    """Mark the dataset ``deleting`` and queue its deletion. ``NotFound`` when there is no such dataset,
    ``Conflict`` while a model version trains on it. Asking again while it is deleting queues the work again."""
    if not is_valid_dataset_name(name):
        raise NotFound(f"dataset {name!r} does not exist", code="dataset_not_found")
    training = model_registry.versions_training_on(name)
    if training:
        listed = ", ".join(f"{model_id} v{version}" for model_id, version in training[:5])
        raise Conflict(f"dataset {name!r} cannot be deleted while a model trains on it ({listed}); "
                       "delete it when training has finished", code="dataset_in_use")
    starting = states_leading_to(DATASET_TRANSITIONS, DatasetStatus.DELETING)
    try:
        aws.table(get_settings().table_name).update_item(
            Key={"pk": keys.dataset_pk(name), "sk": keys.META},
            UpdateExpression="SET #status = :deleting, deletion_requested_at = :now",
            ConditionExpression="attribute_exists(pk) AND (#status IN (" + ", ".join(
                f":s{i}" for i in range(len(starting))) + ") OR #status = :deleting OR attribute_not_exists(#status))",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={":deleting": str(DatasetStatus.DELETING), ":now": aws.utc_now(),
                                       **{f":s{i}": state for i, state in enumerate(starting)}},
        )
    except ClientError as error:
        if aws.is_condition_failed(error):
            raise NotFound(f"dataset {name!r} does not exist", code="dataset_not_found") from None
        raise
    queued_work.enqueue(DELETE_DATASET, {"dataset": name})
    logger.info("dataset deletion requested", extra={"dataset": name})
    return {"name": name, "status": str(DatasetStatus.DELETING)}


@queued_work.handles(DELETE_DATASET)
def delete_dataset_step(document: dict[str, Any]) -> list[dict[str, Any]]:
    """One step of a queued deletion; queues the next step when time runs out. The outcome names no dataset, so
    the batch never recomputes (and so recreates) what is being deleted."""
    name = str(document.get("dataset", ""))
    if not is_valid_dataset_name(name):
        return []
    deadline = time.monotonic() + STEP_SECONDS
    finished = delete_dataset(name, deadline=deadline)
    if not finished:
        queued_work.enqueue(DELETE_DATASET, {"dataset": name}, delay_seconds=CONTINUE_AFTER_SECONDS)
    return [{"key": f"{DATASETS_PREFIX}{name}/", "dataset": None, "status": "deleted" if finished else "deleting"}]


def delete_dataset(name: str, *, deadline: float) -> bool:
    """Delete what the dataset holds until ``deadline`` (``time.monotonic``); True once it is gone entirely.
    Does nothing (True) unless the dataset is marked deleting: a stray message never deletes live data."""
    table = aws.table(get_settings().table_name)
    meta = table.get_item(Key={"pk": keys.dataset_pk(name), "sk": keys.META}, ConsistentRead=True).get("Item")
    if meta is None or meta.get("status") != DatasetStatus.DELETING:
        return True
    if not _delete_uploads(name, deadline) or not _delete_items(name, deadline):
        return False
    try:
        # Not while a recompute that began before the deletion still writes items (it stops at its next step).
        table.delete_item(Key={"pk": keys.dataset_pk(name), "sk": keys.META},
                          ConditionExpression="#status = :deleting AND (attribute_not_exists(lease_owner) OR "
                                              "lease_until < :now)",
                          ExpressionAttributeNames={"#status": "status"},
                          ExpressionAttributeValues={":deleting": str(DatasetStatus.DELETING), ":now": int(time.time())})
    except ClientError as error:
        if aws.is_condition_failed(error):
            return False
        raise
    logger.info("dataset deleted", extra={"dataset": name})
    return True


def _delete_uploads(name: str, deadline: float) -> bool:
    s3 = aws.client("s3")
    bucket = get_settings().data_bucket
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=f"{DATASETS_PREFIX}{name}/"):
        _delete_objects(bucket, [obj["Key"] for obj in page.get("Contents", [])])
        if page.get("IsTruncated") and time.monotonic() > deadline:
            return False
    return True


def _delete_objects(bucket: str, object_keys: list[str]) -> None:
    for start in range(0, len(object_keys), S3_DELETE_BATCH):
        batch = object_keys[start:start + S3_DELETE_BATCH]
        if batch:
            aws.client("s3").delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": key} for key in batch],
                                                                     "Quiet": True})


def _delete_items(name: str, deadline: float) -> bool:
    """Every item of the dataset but META, with what each one owns elsewhere."""
    table = aws.table(get_settings().table_name)
    items = aws.query_items(table, KeyConditionExpression=Key("pk").eq(keys.dataset_pk(name)), ConsistentRead=True,
                            ProjectionExpression="pk, sk, sha256, #key, result_key",
                            ExpressionAttributeNames={"#key": "key"})
    orphaned: list[str] = []
    results: list[str] = []
    finished = True
    with table.batch_writer() as writer:
        for item in items:
            sk = str(item["sk"])
            if sk == keys.META:
                continue
            if sk.startswith("ENTRY#"):
                sha = sk.removeprefix("ENTRY#")
                table.delete_item(Key={"pk": keys.image_pk(sha), "sk": keys.dataset_ref_sk(name)})
                if not _referenced(sha):
                    orphaned += [str(item["key"]), keys.thumbnail_key(sha)]
            if item.get("result_key"):
                results.append(str(item["result_key"]))
            writer.delete_item(Key={"pk": item["pk"], "sk": sk})
            if time.monotonic() > deadline:
                finished = False
                break
    # Images go after their reference items: a crash in between leaks an image nothing points to, never leaves a
    # reference to a missing image.
    _delete_objects(get_settings().artifact_bucket, orphaned + results)
    return finished


def _referenced(sha256: str) -> bool:
    """Whether any dataset or snapshot still references the stored image."""
    page = aws.table(get_settings().table_name).query(
        KeyConditionExpression=Key("pk").eq(keys.image_pk(sha256)), ConsistentRead=True, Limit=1)
    return bool(page.get("Items"))
