"""Training snapshots: the immutable, content-addressed record of exactly what a model version trained on.

A snapshot's id is the SHA-256 of its manifest's contents (task, classes, and every item: image content hash,
labels or boxes, split), so the same data always makes the same snapshot and any change makes a new one. Each
snapshot keeps its manifest at ``snapshots/<id>/manifest.json`` in the artifact bucket, an item under every
dataset it includes (``GET /v1/datasets/{name}/versions``), and a reference to each of its images, which keeps
them when a dataset is deleted.
"""
from __future__ import annotations

import json
from typing import Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from sightline import aws, keys
from sightline.config import get_settings
from sightline.contract import MANIFEST_FILE, snapshot_id
from sightline.datasets.catalog import images_per_class

SNAPSHOT_FIELDS = ("snapshot_id", "task", "datasets", "classes", "images", "manifest", "created_at", "model_versions")


def snapshot_key(snapshot: str) -> str:
    return f"snapshots/{snapshot}/{MANIFEST_FILE}"


def record_snapshot(manifest: dict[str, Any], model_id: str, version: int) -> str:
    """Keep ``manifest`` as a snapshot (once), list it under each of its datasets with the model version that
    uses it, and reference its images. Idempotent: a retried training start records the same thing again."""
    snapshot = snapshot_id(manifest)
    settings = get_settings()
    body = json.dumps(manifest, separators=(",", ":")).encode()
    try:
        aws.client("s3").put_object(Bucket=settings.artifact_bucket, Key=snapshot_key(snapshot), Body=body,
                                    ContentType="application/json", IfNoneMatch="*")
    except ClientError as error:
        if not aws.is_condition_failed(error):
            raise
    table = aws.table(settings.table_name)
    with table.batch_writer(overwrite_by_pkeys=["pk", "sk"]) as writer:
        for item in manifest["items"]:
            writer.put_item(Item={"pk": keys.image_pk(item["id"]), "sk": keys.snapshot_ref_sk(snapshot),
                                  "snapshot_id": snapshot, "key": item["image"]["key"]})
    counts = images_per_class(manifest["items"])
    for name in manifest["datasets"]:
        table.update_item(
            Key={"pk": keys.dataset_pk(name), "sk": keys.snapshot_sk(snapshot)},
            UpdateExpression=(
                "SET snapshot_id = :id, task = :task, datasets = :datasets, classes = :classes, images = :images, "
                "manifest = :manifest, created_at = if_not_exists(created_at, :now) ADD model_versions :version"
            ),
            ExpressionAttributeValues={
                ":id": snapshot, ":task": manifest["task"], ":datasets": list(manifest["datasets"]),
                ":classes": counts, ":images": len(manifest["items"]),
                ":manifest": f"s3://{settings.artifact_bucket}/{snapshot_key(snapshot)}", ":now": aws.utc_now(),
                ":version": {f"{model_id}/v{version}"},
            },
        )
    return snapshot


def list_snapshots(name: str) -> list[dict[str, Any]]:
    """The dataset's snapshots, newest first."""
    items = aws.query_items(
        aws.table(get_settings().table_name),
        KeyConditionExpression=Key("pk").eq(keys.dataset_pk(name)) & Key("sk").begins_with(keys.snapshot_sk("")),
    )
    snapshots = [{field: value for field, value in aws.from_dynamo(item).items() if field in SNAPSHOT_FIELDS}
                 for item in items]
    for snapshot in snapshots:
        snapshot["model_versions"] = sorted(snapshot.get("model_versions") or [])
    return sorted(snapshots, key=lambda snapshot: (snapshot["created_at"], snapshot["snapshot_id"]), reverse=True)
