"""A dataset's stored summary: recomputed from its sources after a batch of changes, written as small items.

The summary is several kinds of items under the dataset's partition, so none outgrows DynamoDB's 400 KB item
limit however many classes, images or issues a dataset has:

- ``META``: status, counts, tasks, formats, duplicates, readiness to train, training digests;
- ``CLASS#<label>``: images, boxes and examples per class;
- ``ISSUE#<n>``: the issues, in the order found (the first ``catalog.DATASET_ISSUE_LIMIT``; all are counted);
- ``ENTRY#<sha256>``: one per image, with its labels or boxes (``GET /v1/datasets/{name}/images``), mirrored by
  ``IMAGE#<sha256> / REF#DATASET#<name>``, which says the stored image is in use (``DELETE`` reads it).

Only what changed is written: each derived item carries a ``digest`` of its attributes, and a recompute reads
back only the sort keys and digests (not every image's labels and boxes) to find what changed. One recompute of a dataset runs at a time: it holds a lease on META (longer than
the function may run, so it cannot outlive it). A recompute asked for while another runs marks the dataset
``dirty`` and leaves; the running one sees the mark when it lets go and runs once more, so no change is lost and
the items are never written by two recomputes at once (which is what lets them be plain batch writes).
"""
from __future__ import annotations

import hashlib
import json
import time
import uuid
from typing import Any

from aws_lambda_powertools import Logger
from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from sightline import aws, events, keys
from sightline.config import get_settings
from sightline.contract import DatasetStatus
from sightline.datasets import catalog, store
from sightline.datasets.issues import Issue

logger = Logger(child=True)

DATASET_UPDATED = "DatasetUpdated"
# Longer than the register function may run (900 s): a lease outlives its holder only when the holder crashed.
LEASE_SECONDS = 960
# A recompute that keeps finding new changes still ends (the last mark is left for the next batch's recompute).
MAX_RUNS = 10
MAX_LISTED_TOO_SMALL = 20  # reasons per task kept on the META item (all are counted)


def recompute_dataset(name: str) -> dict[str, Any]:
    """Rebuild the dataset's summary from all its source items and store what changed; when another recompute
    holds the dataset, leave it a mark to run again instead. Returns the dataset in its public shape (this
    recompute's, or the stored one when another recompute will write it)."""
    token = uuid.uuid4().hex
    if not _acquire(name, token):
        _mark_dirty(name)
        # The holder may have let go between the two calls, missing the mark: try once more.
        if not _acquire(name, token):
            logger.info("dataset marked for the recompute under way", extra={"dataset": name})
            return store.get_dataset(name, consistent=True) or {"name": name}
    try:
        for _ in range(MAX_RUNS):
            _clear_dirty(name)  # before reading the sources: a mark after this is a change this run may miss
            sources_read_at = aws.utc_now()  # every source registered before this is in what the run reads
            contents = catalog.dataset_contents(name)
            _sync_derived_items(name, _derived_items(contents))
            dataset = _write_meta(name, token, contents, sources_read_at)
            if dataset is None:  # a deletion started: leave the rest to it
                _release(name, token, force=True)
                return {"name": name, "status": str(DatasetStatus.DELETING)}
            if _release(name, token):
                break
        else:
            _release(name, token, force=True)
    except BaseException:
        _release(name, token, force=True)
        raise
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


# ---------------------------------------------------------------- the lease


def _meta_key(name: str) -> dict[str, str]:
    return {"pk": keys.dataset_pk(name), "sk": keys.META}


def _update_meta(name: str, **request: Any) -> bool:
    """A conditional update of META; False when its condition does not hold."""
    try:
        aws.table(get_settings().table_name).update_item(Key=_meta_key(name), **request)
        return True
    except ClientError as error:
        if aws.is_condition_failed(error):
            return False
        raise


def _acquire(name: str, token: str) -> bool:
    """Hold the dataset's lease unless a live one is held or the dataset is being deleted. A dataset seen for the
    first time gets its META item here (status ``empty`` until the summary lands)."""
    now = time.time()
    return _update_meta(
        name,
        UpdateExpression=(
            "SET lease_owner = :token, lease_until = :until, #name = if_not_exists(#name, :name), "
            "#status = if_not_exists(#status, :empty), created_at = if_not_exists(created_at, :created), "
            "gsi1pk = :index, gsi1sk = :name"
        ),
        ConditionExpression=(
            "(attribute_not_exists(lease_owner) OR lease_until < :now) "
            "AND (attribute_not_exists(#status) OR #status <> :deleting)"
        ),
        ExpressionAttributeNames={"#name": "name", "#status": "status"},
        ExpressionAttributeValues={
            ":token": token, ":until": int(now + LEASE_SECONDS), ":now": int(now), ":name": name,
            ":empty": str(DatasetStatus.EMPTY), ":created": aws.utc_now(), ":index": keys.DATASETS_INDEX_PK,
            ":deleting": str(DatasetStatus.DELETING),
        },
    )


def _mark_dirty(name: str) -> None:
    _update_meta(name, UpdateExpression="SET dirty = :true", ConditionExpression="attribute_exists(pk)",
                 ExpressionAttributeValues={":true": True})


def _clear_dirty(name: str) -> None:
    _update_meta(name, UpdateExpression="REMOVE dirty", ConditionExpression="attribute_exists(pk)")


def _release(name: str, token: str, *, force: bool = False) -> bool:
    """Let go of the lease; False (still held) when the dataset was marked meanwhile and must run again."""
    condition = "lease_owner = :token" + ("" if force else " AND attribute_not_exists(dirty)")
    released = _update_meta(name, UpdateExpression="REMOVE lease_owner, lease_until", ConditionExpression=condition,
                            ExpressionAttributeValues={":token": token})
    return released or force


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


DIGEST = "digest"


def stored_digests(name: str) -> dict[str, str | None]:
    """sort key -> stored digest of every derived item of the dataset (None for an item written before items
    carried one: it differs from any digest, so the next recompute rewrites it)."""
    table = aws.table(get_settings().table_name)
    digests: dict[str, str | None] = {}
    for prefix in keys.DERIVED_PREFIXES:
        for item in aws.query_items(
            table, KeyConditionExpression=Key("pk").eq(keys.dataset_pk(name)) & Key("sk").begins_with(prefix),
            ProjectionExpression="sk, #digest", ExpressionAttributeNames={"#digest": DIGEST}, ConsistentRead=True,
        ):
            digests[item["sk"]] = item.get(DIGEST)
    return digests


def attributes_digest(attributes: dict[str, Any]) -> str:
    """A digest of an item's attributes, the same for the same attributes whatever their order (floats by repr,
    as the summary computes them from the same sources each time)."""
    canonical = json.dumps({k: v for k, v in attributes.items() if k not in ("pk", "sk", DIGEST)},
                           sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(canonical.encode(), digest_size=16).hexdigest()


def _sync_derived_items(name: str, desired: dict[str, dict[str, Any]]) -> None:
    """Write what differs between ``desired`` and the stored items (the lease makes this recompute the only
    writer)."""
    pk = keys.dataset_pk(name)
    stored = stored_digests(name)
    written = 0
    with aws.table(get_settings().table_name).batch_writer() as writer:
        for sk, attributes in desired.items():
            digest = attributes_digest(attributes)
            if sk in stored and stored[sk] == digest:
                continue
            written += 1
            writer.put_item(Item=aws.to_dynamo({**attributes, "pk": pk, "sk": sk, DIGEST: digest}))
            if sk.startswith("ENTRY#") and sk not in stored:
                writer.put_item(Item={"pk": keys.image_pk(attributes["sha256"]), "sk": keys.dataset_ref_sk(name),
                                      "dataset": name, "key": attributes["key"]})
        for sk in stored.keys() - desired.keys():
            written += 1
            writer.delete_item(Key={"pk": pk, "sk": sk})
            if sk.startswith("ENTRY#"):
                writer.delete_item(Key={"pk": keys.image_pk(sk.removeprefix("ENTRY#")), "sk": keys.dataset_ref_sk(name)})
    if written:
        logger.info("dataset items written", extra={"dataset": name, "items": written})


# ---------------------------------------------------------------- META


def _write_meta(name: str, token: str, contents: catalog.DatasetContents, sources_read_at: str) -> dict[str, Any] | None:
    """Store the summary on META; None when the dataset began to be deleted meanwhile."""
    class_stats = contents.class_stats()
    too_small = contents.too_small()
    values = {
        "status": contents.status(),
        "images": contents.image_count,
        "annotations": contents.annotation_count,
        "class_count": len(class_stats),
        "tasks": contents.tasks(),
        "formats": contents.formats,
        "negatives": len(contents.negatives),
        "duplicates": contents.duplicates(),
        "too_small": {task: {"reasons": reasons[:MAX_LISTED_TOO_SMALL], "count": len(reasons)}
                      for task, reasons in too_small.items()},
        "issue_count": contents.issues.count,
        "training_digests": contents.training_digests(),
        "updated_at": aws.utc_now(),
        # What POST /v1/datasets/{name}/uploads/status compares each source's registered_at with.
        "sources_read_at": sources_read_at,
    }
    names = {f"#{field}": field for field in values}
    try:
        response = aws.table(get_settings().table_name).update_item(
            Key=_meta_key(name),
            # classes and issues lived on this item before they were items of their own.
            UpdateExpression="SET " + ", ".join(f"#{field} = :{field}" for field in values) + " REMOVE classes, issues",
            ConditionExpression="lease_owner = :token AND #status <> :deleting",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={**{f":{field}": aws.to_dynamo(value) for field, value in values.items()},
                                       ":token": token, ":deleting": str(DatasetStatus.DELETING)},
            ReturnValues="ALL_NEW",
        )
    except ClientError as error:
        if aws.is_condition_failed(error):
            return None
        raise
    return store.public_dataset(response["Attributes"], classes=class_stats,
                                issues=_first_issues(contents.issues.items))


def _first_issues(issues: list[Issue]) -> list[Issue]:
    return [{"key": issue["key"], "reason": issue["reason"]} for issue in issues[: store.ISSUES_IN_DATASET]]
