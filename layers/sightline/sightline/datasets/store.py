"""Dataset reads for the API and the training workflow."""
from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from typing import Any

from boto3.dynamodb.conditions import Attr, Key

from sightline import aws, keys
from sightline.config import get_settings
from sightline.contract import TASKS, DatasetStatus
from sightline.datasets import catalog
from sightline.datasets.images import THUMBNAIL_SIDE
from sightline.datasets.paths import dataset_name_problem, is_valid_dataset_name
from sightline.errors import BadRequest, Conflict, NotFound


def migrate_dataset_status(item: dict[str, Any]) -> DatasetStatus:
    """The status of a stored dataset item, in today's states.

    Releases before terminal states wrote ``registering`` for every dataset without images, whatever the reason,
    and left it there; such an item is read as the state its stored counts give (the next recompute of the
    dataset writes it for good). Everything today's code writes passes through unchanged.
    """
    status = item.get("status")
    if status in (DatasetStatus.READY, DatasetStatus.EMPTY, DatasetStatus.INVALID, DatasetStatus.DELETING):
        return DatasetStatus(status)
    return catalog.dataset_status(bool(item.get("tasks")), int(item.get("issue_count") or 0))


# Issues a dataset's own answer carries; the rest are paged by ``GET /v1/datasets/{name}/issues``.
ISSUES_IN_DATASET = 100
MAX_ISSUES_PER_PAGE = 1000
MAX_IMAGES_PER_PAGE = 100
THUMBNAIL_URL_SECONDS = 3600


def public_dataset(
    item: dict[str, Any], *, classes: dict[str, dict[str, int]] | None = None, issues: list[dict] | None = None,
) -> dict[str, Any]:
    """The API's view of a dataset: its META item (no table keys, no concurrency bookkeeping), with its classes
    (``{label: {"images", "boxes"}}``) and first issues when given. Items written before classes and issues were
    items of their own carry them inline (``classes`` as examples per label)."""
    item = aws.from_dynamo(item)
    if classes is None:  # an item from before class items: examples per label is all it kept
        classes = {label: {"images": count, "boxes": 0, "examples": count}
                   for label, count in (item.get("classes") or {}).items()}
    if issues is None:
        issues = list(item.get("issues") or [])[:ISSUES_IN_DATASET]
    dataset = {
        "name": item["name"],
        "status": migrate_dataset_status(item),
        # Examples per class: labelled images plus boxes (what a training run sees of each class).
        "classes": {label: counts["examples"] for label, counts in classes.items()},
        "class_counts": {label: {"images": counts["images"], "boxes": counts["boxes"]}
                         for label, counts in classes.items()},
        "class_count": item.get("class_count", len(classes)),
        "images": item.get("images", 0),
        "annotations": item.get("annotations", 0),
        "tasks": list(item.get("tasks", [])),
        "formats": list(item.get("formats", [])),
        "negatives": item.get("negatives", 0),
        "duplicates": item.get("duplicates") or {"count": 0, "groups": []},
        "too_small": dict(item.get("too_small") or {}),
        "issues": [{"key": issue["key"], "reason": issue["reason"]} for issue in issues],
        "issue_count": item.get("issue_count", 0),
        "training_digests": dict(item.get("training_digests", {})),
        "created_at": item.get("created_at"),
        "updated_at": item.get("updated_at"),
    }
    return dataset


def _table() -> Any:
    return aws.table(get_settings().table_name)


def get_dataset(name: str, *, consistent: bool = False) -> dict[str, Any] | None:
    """The dataset with all its classes and its first ``ISSUES_IN_DATASET`` issues; None when there is none."""
    if not is_valid_dataset_name(name):
        return None
    item = _table().get_item(Key={"pk": keys.dataset_pk(name), "sk": keys.META}, ConsistentRead=consistent).get("Item")
    if not item:
        return None
    if "class_count" not in item:  # stored before classes and issues were items of their own
        return public_dataset(item)
    classes = {
        str(row["label"]): {"images": int(row["images"]), "boxes": int(row["boxes"]), "examples": int(row["examples"])}
        for row in _query_prefix(name, "CLASS#", consistent=consistent)
    }
    issues, _ = list_issues(name, limit=ISSUES_IN_DATASET, consistent=consistent)
    return public_dataset(item, classes=classes, issues=issues)


def dataset_meta(name: str) -> dict[str, Any] | None:
    """The dataset's META item as stored (lease and marks included), read strongly consistent; None when none."""
    if not is_valid_dataset_name(name):
        return None
    return _table().get_item(Key={"pk": keys.dataset_pk(name), "sk": keys.META}, ConsistentRead=True).get("Item")


def get_dataset_summary(name: str) -> dict[str, Any] | None:
    """The dataset without its classes and issues (one read); None when there is none."""
    if not is_valid_dataset_name(name):
        return None
    item = _table().get_item(Key={"pk": keys.dataset_pk(name), "sk": keys.META}).get("Item")
    return dataset_summary(public_dataset(item)) if item else None


def check_accepts_uploads(name: str) -> None:
    """``BadRequest`` for a name that cannot be a dataset's, ``Conflict`` while the dataset is being deleted (an
    upload then would be deleted with it, or outlive it half-registered)."""
    problem = dataset_name_problem(name)
    if problem:
        raise BadRequest(problem, code="invalid_dataset_name")
    dataset = get_dataset_summary(name)
    if dataset is not None and dataset["status"] == DatasetStatus.DELETING:
        raise Conflict(f"dataset {name!r} is being deleted; upload again once it is gone", code="dataset_deleting")


def _query_prefix(name: str, prefix: str, *, consistent: bool = False, after: str | None = None,
                  limit: int | None = None, **query: Any) -> Iterator[dict[str, Any]]:
    condition = Key("pk").eq(keys.dataset_pk(name)) & Key("sk").begins_with(prefix)
    if after is not None:
        query["ExclusiveStartKey"] = {"pk": keys.dataset_pk(name), "sk": after}
    if limit is not None:
        query["Limit"] = limit
    return aws.query_items(_table(), KeyConditionExpression=condition, ConsistentRead=consistent, **query)


def list_issues(name: str, *, limit: int = MAX_ISSUES_PER_PAGE, after: int | None = None,
                consistent: bool = False) -> tuple[list[dict[str, str]], int | None]:
    """One page of the dataset's issues in the order found: at most ``limit`` after position ``after``, and the
    position to pass as ``after`` for the next page (None on the last)."""
    start = None if after is None else keys.issue_sk(after)
    rows = list(islice(_query_prefix(name, "ISSUE#", consistent=consistent, after=start, limit=limit + 1), limit + 1))
    page = [{"key": row["key"], "reason": row["reason"]} for row in rows[:limit]]
    next_after = int(rows[limit - 1]["sk"].removeprefix("ISSUE#")) if len(rows) > limit else None
    return page, next_after


def list_images(name: str, *, label: str | None = None, limit: int = MAX_IMAGES_PER_PAGE,
                after: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """One page of the dataset's images (by content hash), optionally only those showing class ``label``: each
    with its labels or boxes and a presigned thumbnail URL; and the cursor (an image's sha256) of the next page."""
    query: dict[str, Any] = {}
    if label is not None:
        query = {"FilterExpression": Attr("classes").contains(label)}
    start = None if after is None else keys.entry_sk(after)
    rows = list(islice(_query_prefix(name, "ENTRY#", after=start, **query), limit + 1))
    page = [_public_image(aws.from_dynamo(row)) for row in rows[:limit]]
    return page, (page[-1]["sha256"] if len(rows) > limit else None)


def _public_image(row: dict[str, Any]) -> dict[str, Any]:
    image = {field: row[field] for field in ("sha256", "path", "copies", "width", "height", "classes") if field in row}
    for field in ("labels", "boxes", "box_count"):
        if field in row:
            image[field] = row[field]
    key = row["key"]
    if max(int(row["width"]), int(row["height"])) > THUMBNAIL_SIDE:
        key = keys.thumbnail_key(row["sha256"])
    image["thumbnail_url"] = aws.client("s3").generate_presigned_url(
        "get_object", Params={"Bucket": get_settings().artifact_bucket, "Key": key}, ExpiresIn=THUMBNAIL_URL_SECONDS)
    return image


MAX_DATASETS_PER_PAGE = 100


SUMMARY_LEAVES_OUT = ("issues", "classes", "class_counts")


def dataset_summary(dataset: dict[str, Any]) -> dict[str, Any]:
    """A dataset without its issue bodies and classes (``issue_count`` and ``class_count`` stay): what a listing
    carries, so that a page of datasets with many issues or classes stays far below Lambda's 6 MB answer."""
    return {key: value for key, value in dataset.items() if key not in SUMMARY_LEAVES_OUT}


def list_dataset_summaries(*, limit: int = MAX_DATASETS_PER_PAGE, after: str | None = None) -> tuple[list[dict], str | None]:
    """One page of datasets by name: at most ``limit`` summaries with names after ``after``, and the name to pass
    as ``after`` for the next page (None on the last one)."""
    condition = Key("gsi1pk").eq(keys.DATASETS_INDEX_PK)
    if after is not None:
        condition = condition & Key("gsi1sk").gt(after)
    # One more than the page shows tells whether another page follows; islice stops the query there.
    items = list(islice(aws.query_items(_table(), IndexName=keys.GSI1, KeyConditionExpression=condition,
                                        Limit=limit + 1), limit + 1))
    page = [dataset_summary(public_dataset(item)) for item in items[:limit]]
    return page, (page[-1]["name"] if len(items) > limit else None)


def dataset_items(names: list[str], task: str) -> list[dict[str, Any]]:
    """Manifest items (``sightline.manifest/v1`` without ``split``) for ``task`` across ``names``.

    An image present in several datasets (same content) appears once, as the first dataset listed has it.
    Raises ``NotFound`` for a dataset that does not exist and ``BadRequest`` for an unknown task.
    """
    if task not in TASKS:
        raise BadRequest(f"task must be one of {', '.join(TASKS)}, got {task!r}", code="invalid_task")
    unknown = [name for name in names if get_dataset(name) is None]
    if unknown:
        raise NotFound(f"dataset not found: {', '.join(unknown)}", code="dataset_not_found")
    bucket = get_settings().artifact_bucket
    items: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(names):
        for item in catalog.dataset_contents(name).items(task, bucket):
            items.setdefault(item["id"], item)
    return [items[item_id] for item_id in sorted(items)]
