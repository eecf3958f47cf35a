"""A dataset's stored summary: recomputed from its sources after a batch of changes, written as small items.

The summary is several kinds of items under the dataset's partition, so none outgrows DynamoDB's 400 KB item
limit however many classes, images or issues a dataset has:

- ``META``: status, counts, tasks, formats, duplicates, readiness to train, training digests;
- ``CLASS#<label>``: images and boxes per class;
- ``ISSUE#<n>``: the issues, in the order found (the first ``catalog.DATASET_ISSUE_LIMIT``; all are counted);
- ``ENTRY#<sha256>``: one per image, with its labels or boxes (``GET /v1/datasets/{name}/images``), mirrored by
  ``IMAGE#<sha256> / REF#DATASET#<name>``, which says the stored image is in use (``DELETE`` reads it).

Only what changed is written. Recomputes of one dataset may overlap (several batches at once): each first
*claims* the dataset (``claimed_at``, conditional on being the newest), then writes its changes in transactions
that check the claim is still its own, so an older recompute can never overwrite a newer one's items, and the
newest one always reads the items it diffs against after every older write has landed or failed.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from aws_lambda_powertools import Logger
from boto3.dynamodb.conditions import Key
from boto3.dynamodb.types import TypeSerializer
from botocore.exceptions import ClientError

from sightline import aws, events, keys
from sightline.config import get_settings
from sightline.contract import DatasetStatus
from sightline.datasets import catalog, store
from sightline.datasets.issues import Issue

logger = Logger(child=True)

DATASET_UPDATED = "DatasetUpdated"
# DynamoDB takes at most 100 actions per transaction; one is the claim check.
TRANSACTION_ACTIONS = 100
TRANSACTION_ATTEMPTS = 5
MAX_LISTED_TOO_SMALL = 20  # reasons per task kept on the META item (all are counted)

_serializer = TypeSerializer()


class ClaimLost(Exception):
    """A newer recompute of the dataset took over; this one stops without writing more."""


def recompute_dataset(name: str, *, listed_at: int | None = None) -> dict[str, Any]:
    """Rebuild the dataset's summary from all its source items and store what changed, unless a newer recompute
    did. ``listed_at`` orders recomputes (defaults to now, taken before reading). Returns the dataset in its
    public shape: this recompute's, or the stored one when a newer recompute took over."""
    if listed_at is None:
        listed_at = time.time_ns()
    if not _claim(name, listed_at):
        logger.info("a newer recompute of the dataset is under way or done", extra={"dataset": name})
        return store.get_dataset(name, consistent=True) or {"name": name}
    contents = catalog.dataset_contents(name)
    try:
        _sync_derived_items(name, listed_at, _derived_items(contents))
        dataset = _write_meta(name, listed_at, contents)
    except ClaimLost:
        logger.info("a newer recompute took over the dataset", extra={"dataset": name})
        return store.get_dataset(name, consistent=True) or {"name": name}
    events.publish(
        DATASET_UPDATED,
        {
            "name": name,
            "status": dataset["status"],
            "images": dataset["images"],
            "annotations": dataset["annotations"],
            "class_count": dataset["class_count"],
            "tasks": dataset["tasks"],
            "issue_count": dataset["issue_count"],
        },
    )
    return dataset


# ---------------------------------------------------------------- the claim


def _meta_key(name: str) -> dict[str, str]:
    return {"pk": keys.dataset_pk(name), "sk": keys.META}


def _claim(name: str, listed_at: int) -> bool:
    """Make this recompute the dataset's newest; False when a newer one claimed it or the dataset is being deleted.
    A dataset seen for the first time gets its META item here (status ``empty`` until the summary lands)."""
    try:
        aws.table(get_settings().table_name).update_item(
            Key=_meta_key(name),
            UpdateExpression=(
                "SET claimed_at = :listed_at, #name = if_not_exists(#name, :name), "
                "#status = if_not_exists(#status, :empty), created_at = if_not_exists(created_at, :now), "
                "gsi1pk = :index, gsi1sk = :name"
            ),
            ConditionExpression=(
                "(attribute_not_exists(claimed_at) OR claimed_at < :listed_at) "
                "AND (attribute_not_exists(#status) OR #status <> :deleting)"
            ),
            ExpressionAttributeNames={"#name": "name", "#status": "status"},
            ExpressionAttributeValues={
                ":listed_at": listed_at, ":name": name, ":empty": str(DatasetStatus.EMPTY), ":now": aws.utc_now(),
                ":index": keys.DATASETS_INDEX_PK, ":deleting": str(DatasetStatus.DELETING),
            },
        )
        return True
    except ClientError as error:
        if aws.is_condition_failed(error):
            return False
        raise


def _claim_check(name: str, listed_at: int) -> dict[str, Any]:
    return {
        "ConditionCheck": {
            "TableName": get_settings().table_name,
            "Key": {"pk": {"S": keys.dataset_pk(name)}, "sk": {"S": keys.META}},
            "ConditionExpression": "claimed_at = :listed_at",
            "ExpressionAttributeValues": {":listed_at": {"N": str(listed_at)}},
        }
    }


# ---------------------------------------------------------------- the derived items


def _derived_items(contents: catalog.DatasetContents) -> dict[str, dict[str, Any]]:
    """sort key -> attributes (without keys) of every CLASS, ISSUE and ENTRY item the contents call for."""
    items: dict[str, dict[str, Any]] = {}
    for label, counts in contents.class_stats().items():
        items[keys.class_sk(label)] = {"label": label, **counts}
    for position, issue in enumerate(contents.issues.items):
        items[keys.issue_sk(position)] = {"key": issue["key"], "reason": issue["reason"]}
    for sha, entry in contents.entries().items():
        items[keys.entry_sk(sha)] = entry
    return items


def stored_derived_items(name: str) -> Iterator[dict[str, Any]]:
    table = aws.table(get_settings().table_name)
    for prefix in keys.DERIVED_PREFIXES:
        yield from aws.query_items(
            table, KeyConditionExpression=Key("pk").eq(keys.dataset_pk(name)) & Key("sk").begins_with(prefix),
            ConsistentRead=True,
        )


def _comparable(attributes: dict[str, Any]) -> Any:
    # What DynamoDB gives back for what was written (floats as Decimal, whole numbers as int).
    return aws.from_dynamo(aws.to_dynamo({k: v for k, v in attributes.items() if k not in ("pk", "sk")}))


def _sync_derived_items(name: str, listed_at: int, desired: dict[str, dict[str, Any]]) -> None:
    """Write what differs between ``desired`` and the stored items; raise ``ClaimLost`` when overtaken."""
    table_name = get_settings().table_name
    pk = keys.dataset_pk(name)
    stored = {item["sk"]: item for item in stored_derived_items(name)}
    actions: list[dict[str, Any]] = []
    for sk, attributes in desired.items():
        if sk in stored and _comparable(stored[sk]) == _comparable(attributes):
            continue
        actions.append(_put(table_name, {"pk": pk, "sk": sk, **attributes}))
        if sk.startswith("ENTRY#") and sk not in stored:
            actions.append(_put(table_name, {"pk": keys.image_pk(attributes["sha256"]), "sk": keys.dataset_ref_sk(name),
                                             "dataset": name, "key": attributes["key"]}))
    for sk in stored.keys() - desired.keys():
        actions.append(_delete(table_name, pk, sk))
        if sk.startswith("ENTRY#"):
            actions.append(_delete(table_name, keys.image_pk(sk.removeprefix("ENTRY#")), keys.dataset_ref_sk(name)))
    step = TRANSACTION_ACTIONS - 1
    for start in range(0, len(actions), step):
        _transact(actions[start:start + step], name, listed_at)
    if actions:
        logger.info("dataset items written", extra={"dataset": name, "actions": len(actions)})


def _put(table_name: str, item: dict[str, Any]) -> dict[str, Any]:
    return {"Put": {"TableName": table_name,
                    "Item": {k: _serializer.serialize(aws.to_dynamo(v)) for k, v in item.items()}}}


def _delete(table_name: str, pk: str, sk: str) -> dict[str, Any]:
    return {"Delete": {"TableName": table_name, "Key": {"pk": {"S": pk}, "sk": {"S": sk}}}}


def _transact(actions: list[dict[str, Any]], name: str, listed_at: int) -> None:
    for attempt in range(TRANSACTION_ATTEMPTS):
        try:
            aws.client("dynamodb").transact_write_items(TransactItems=[_claim_check(name, listed_at), *actions])
            return
        except ClientError as error:
            reasons = error.response.get("CancellationReasons") or []
            if reasons and reasons[0].get("Code") == "ConditionalCheckFailed":
                raise ClaimLost(name) from None
            if not aws.is_transaction_lost(error) or attempt == TRANSACTION_ATTEMPTS - 1:
                raise
            time.sleep(0.05 * 2**attempt)  # a conflict with another transaction on the same items


# ---------------------------------------------------------------- META


def _write_meta(name: str, listed_at: int, contents: catalog.DatasetContents) -> dict[str, Any]:
    too_small = contents.too_small()
    values = {
        "status": contents.status(),
        "images": contents.image_count,
        "annotations": contents.annotation_count,
        "class_count": len(contents.class_stats()),
        "example_count": sum(contents.classes().values()),
        "tasks": contents.tasks(),
        "formats": contents.formats,
        "negatives": len(contents.negatives),
        "duplicates": contents.duplicates(),
        "too_small": {task: {"reasons": reasons[:MAX_LISTED_TOO_SMALL], "count": len(reasons)}
                      for task, reasons in too_small.items()},
        "issue_count": contents.issues.count,
        "training_digests": contents.training_digests(),
        "listed_at": listed_at,
        "updated_at": aws.utc_now(),
    }
    names = {f"#{field}": field for field in values}
    try:
        response = aws.table(get_settings().table_name).update_item(
            Key=_meta_key(name),
            # classes and issues lived on this item before they were items of their own.
            UpdateExpression="SET " + ", ".join(f"#{field} = :{field}" for field in values) + " REMOVE classes, issues",
            ConditionExpression="claimed_at = :listed_at",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={f":{field}": aws.to_dynamo(value) for field, value in values.items()},
            ReturnValues="ALL_NEW",
        )
    except ClientError as error:
        if aws.is_condition_failed(error):
            raise ClaimLost(name) from None
        raise
    return store.public_dataset(
        response["Attributes"], classes=contents.class_stats(), issues=_first_issues(contents.issues.items),
    )


def _first_issues(issues: list[Issue]) -> list[Issue]:
    return [{"key": issue["key"], "reason": issue["reason"]} for issue in issues[: store.ISSUES_IN_DATASET]]
