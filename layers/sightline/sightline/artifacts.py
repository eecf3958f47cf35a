"""``GET /v1/models/{id}/versions/{v}/artifacts``: a version's files with presigned download links, so the ONNX
model, its labels.json, metrics.json, card.json (and plots) can be taken and run anywhere."""
from __future__ import annotations

from typing import Any

from sightline import aws, keys, model_registry
from sightline.config import get_settings
from sightline.contract import version_prefix

# How long a download link works: long enough for a model of hundreds of MB on a slow line.
URL_EXPIRY_SECONDS = 3600
# Recorded artifacts kept outside the version's folder that are worth a download: the snapshot it trained on and
# its checkpoint (the ``weights_uri`` of a later fine-tuning).
OUTSIDE_THE_FOLDER = ("manifest", "checkpoint")


def _entry(bucket: str, key: str, size: int, name: str) -> dict[str, Any]:
    url = aws.presigning_client("s3").generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=URL_EXPIRY_SECONDS)
    return {"name": name, "size": int(size), "uri": f"s3://{bucket}/{key}", "url": url}


def version_artifacts(model_id: str, version: int) -> dict[str, Any]:
    """Every file under the version's folder, then its manifest and checkpoint where they exist; a 404 for an
    unknown model or version (``model_registry.get_version``)."""
    record = model_registry.get_version(model_id, version)
    bucket = get_settings().artifact_bucket
    prefix = version_prefix(model_id, version)
    s3 = aws.client("s3")
    files = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            files.append(_entry(bucket, item["Key"], item["Size"], item["Key"][len(prefix):]))
    recorded = record.get("artifacts") or {}
    for name in OUTSIDE_THE_FOLDER:
        if not recorded.get(name):
            continue
        where, key = keys.split_location(recorded[name], bucket)
        try:
            size = s3.head_object(Bucket=where, Key=key)["ContentLength"]
        except Exception as error:  # noqa: BLE001 - absent (a version that never checkpointed) is not an error
            if aws.is_not_found(error):
                continue
            raise
        files.append(_entry(where, key, size, key.rsplit('/', 1)[-1]))
    return {"model_id": model_id, "version": version, "status": record.get("status"),
            "expires_in": URL_EXPIRY_SECONDS, "artifacts": files}
