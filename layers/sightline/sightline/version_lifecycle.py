"""Serving and removing versions by hand: promote any trained version (a rollback is promoting an older one),
delete a version that does not serve, delete a model with all its versions. Datasets are never touched."""
from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from boto3.dynamodb.conditions import Key

from sightline import aws, batch_predictions, evaluations, events, keys, model_registry, workflow
from sightline.config import get_settings
from sightline.contract import VersionStatus, checkpoint_prefix, manifest_key, version_prefix
from sightline.errors import Conflict

logger = Logger(child=True)

_PROMOTION_ATTEMPTS = 10


def promote_version(model_id: str, version_number: int) -> dict[str, Any]:
    """Make a trained version the serving one, whatever the promotion gate decided when it trained."""
    version = model_registry.get_version(model_id, version_number)
    if version["status"] != VersionStatus.READY or not (version.get("artifacts") or {}).get("model"):
        raise Conflict(f"version {version_number} of model {model_id!r} is {version['status']}; only a trained "
                       "version can serve", code="version_not_ready")
    for _ in range(_PROMOTION_ATTEMPTS):
        serving = model_registry.get_model(model_id).get("serving_version")
        if serving == version_number:
            break
        if model_registry.set_serving_version(model_id, version_number, replacing=serving,
                                              classes=list(version.get("classes") or [])):
            model_registry.update_version(model_id, version_number, promoted=True)
            events.publish("ModelVersionPromoted", {"model_id": model_id, "version": version_number,
                                                    "previous_version": serving, "by": "request"})
            logger.info("version promoted by request", extra={"model_id": model_id, "version": version_number,
                                                              "replaced": serving})
            break
    else:
        raise Conflict(f"could not settle the serving version of model {model_id}: too many concurrent changes")
    return {"model_id": model_id, "serving_version": version_number}


def delete_version(model_id: str, version_number: int) -> dict[str, Any]:
    """Remove a version and its artifacts; never the serving one, nor one still training (cancel it first)."""
    version = model_registry.get_version(model_id, version_number)
    if model_registry.get_model(model_id).get("serving_version") == version_number:
        raise Conflict(f"version {version_number} serves model {model_id!r}; promote another version before "
                       "deleting it", code="version_serving")
    if version["status"] == VersionStatus.TRAINING:
        raise Conflict(f"version {version_number} of model {model_id!r} is training; cancel it first",
                       code="version_training")
    evaluations.delete_evaluations_of(model_id, version_number)
    batch_predictions.delete_batch_predictions_of(model_id, version_number)
    _delete_prefixes([version_prefix(model_id, version_number), checkpoint_prefix(model_id, version_number),
                      manifest_key(model_id, version_number).rsplit("/", 1)[0] + "/"])
    aws.table(get_settings().table_name).delete_item(
        Key={"pk": keys.model_pk(model_id), "sk": keys.version_sk(version_number)})
    logger.info("version deleted", extra={"model_id": model_id, "version": version_number})
    return {"model_id": model_id, "version": version_number, "deleted": True}


def delete_model(model_id: str) -> dict[str, Any]:
    """Cancel a training version, then remove every version, their artifacts and the model."""
    model_registry.get_model(model_id)  # 404 for an unknown model
    table = aws.table(get_settings().table_name)
    items = list(aws.query_items(table, KeyConditionExpression=Key("pk").eq(keys.model_pk(model_id)),
                                 ConsistentRead=True))
    model_registry.take_pending_version(model_id)  # nothing queued may start once the run is cancelled
    for item in items:
        if item.get("status") == VersionStatus.TRAINING and "version" in item:
            workflow.cancel_training(model_id, int(item["version"]))
    evaluations.delete_evaluations_of(model_id)
    batch_predictions.delete_batch_predictions_of(model_id)
    _delete_prefixes([f"models/{model_id}/", f"checkpoints/{model_id}/", f"manifests/{model_id}/"])
    with table.batch_writer() as writer:
        for item in items:
            writer.delete_item(Key={"pk": item["pk"], "sk": item["sk"]})
    events.publish("ModelDeleted", {"model_id": model_id})
    versions = sum(1 for item in items if str(item["sk"]).startswith(keys.VERSION_PREFIX))  # not META, pointers
    logger.info("model deleted", extra={"model_id": model_id, "versions": versions})
    return {"model_id": model_id, "deleted": True}


def _delete_prefixes(prefixes: list[str]) -> None:
    aws.delete_prefixes(get_settings().artifact_bucket, prefixes)
