"""Dataset reads for the API and the training workflow."""
from __future__ import annotations

from itertools import islice
from typing import Any

from boto3.dynamodb.conditions import Key

from sightline import aws, keys
from sightline.config import get_settings
from sightline.contract import TASKS, DatasetStatus
from sightline.datasets import catalog
from sightline.datasets.paths import is_valid_dataset_name
from sightline.errors import BadRequest, NotFound


def migrate_dataset_status(item: dict[str, Any]) -> DatasetStatus:
    """The status of a stored dataset item, in today's states.

    Releases before terminal states wrote ``registering`` for every dataset without images, whatever the reason,
    and left it there; such an item is read as the state its stored counts give (the next recompute of the
    dataset writes it for good). Everything today's code writes passes through unchanged.
    """
    status = item.get("status")
    if status in (DatasetStatus.READY, DatasetStatus.EMPTY, DatasetStatus.INVALID):
        return DatasetStatus(status)
    return catalog.dataset_status(bool(item.get("tasks")), int(item.get("issue_count") or 0))


def public_dataset(item: dict[str, Any]) -> dict[str, Any]:
    """The API's view of a dataset META item (no table keys, no concurrency bookkeeping)."""
    item = aws.from_dynamo(item)
    return {
        "name": item["name"],
        "status": migrate_dataset_status(item),
        "classes": dict(item.get("classes", {})),
        "images": item.get("images", 0),
        "annotations": item.get("annotations", 0),
        "tasks": list(item.get("tasks", [])),
        "formats": list(item.get("formats", [])),
        "negatives": item.get("negatives", 0),
        "issues": [{"key": issue["key"], "reason": issue["reason"]} for issue in item.get("issues", [])],
        "issue_count": item.get("issue_count", 0),
        "training_digests": dict(item.get("training_digests", {})),
        "created_at": item.get("created_at"),
        "updated_at": item.get("updated_at"),
    }


def _table() -> Any:
    return aws.table(get_settings().table_name)


def get_dataset(name: str, *, consistent: bool = False) -> dict[str, Any] | None:
    if not is_valid_dataset_name(name):
        return None
    item = _table().get_item(Key={"pk": keys.dataset_pk(name), "sk": keys.META}, ConsistentRead=consistent).get("Item")
    return public_dataset(item) if item else None


MAX_DATASETS_PER_PAGE = 100


def dataset_summary(dataset: dict[str, Any]) -> dict[str, Any]:
    """A dataset without its issue bodies (``issue_count`` stays): what a listing carries, so that a page of
    datasets with many issues stays far below Lambda's 6 MB answer."""
    return {key: value for key, value in dataset.items() if key != "issues"}


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
