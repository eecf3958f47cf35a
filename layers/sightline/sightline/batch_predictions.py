"""Batch predictions: every object under an S3 prefix of the data bucket, predicted by a Step Functions
Distributed Map (``statemachines/batch_predict.asl.json``), results as JSON Lines in the artifact bucket.

``POST /v1/models/{id}/batch-predictions`` checks the request (options as the predict route reads them), pins the
version that answers, records the job (``running``) and starts the workflow. Each batch of objects writes its
part and adds to the record's counters (``sightline.batch_prediction_worker``); the last step writes
``manifest.json`` and settles the record (``finish``). Reading an unfinished job also settles it from its
execution's state (an execution that failed, timed out or was stopped before its last step could record it).
"""
from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timezone
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from sightline import aws, keys, model_registry
from sightline.config import get_settings
from sightline.contract import (
    BATCH_PREDICTION_FORMAT,
    BATCH_PREDICTION_PARTS,
    MANIFEST_FILE,
    BatchPredictionStatus,
    batch_prediction_prefix,
)
from sightline.errors import BadRequest, NotFound, SightlineError
from sightline.predict_request import classes_option, max_results_option, threshold_option, version_option
from sightline.serving import serving
from sightline.training_failures import one_line
from sightline.video import parse_video_options
from sightline.workflow import read_artifact_json

logger = Logger(child=True)

FIELDS = ("s3_prefix", "version", "threshold", "max_results", "classes", "video")
# A record without an execution this old is one whose start never happened (the API died between its writes).
UNSTARTED_AFTER_SECONDS = 300
URL_EXPIRY_SECONDS = 3600
_ID = re.compile(r"[0-9a-f]{32}")
_ENDED = ("FAILED", "TIMED_OUT", "ABORTED")
_RECORD_FIELDS = ("batch_prediction_id", "status", "model_id", "version", "task", "source", "options", "video",
                  "execution_arn", "created_at", "started_at", "finished_at", "failure_reason")


class BatchPredictionUnavailable(SightlineError):
    """The workflow could not be started."""

    status = 503
    code = "batch_prediction_unavailable"


def _table() -> Any:
    return aws.table(get_settings().table_name)


_POINTER = "BATCHPREDICTION#"  # sk of the pointer item in the model's partition


def delete_batch_predictions_of(model_id: str, version: int | None = None) -> int:
    """Remove the batch predictions of a model (or of one of its versions): executions still running are stopped
    first, so no part is written afterwards; then the results, the record and its pointer. How many."""
    table = _table()
    pointers = [item for item in model_registry.model_pointers(model_id, _POINTER)
                if version is None or int(item["version"]) == version]
    for pointer in pointers:
        batch_prediction_id = str(pointer["batch_prediction_id"])
        record = _read(batch_prediction_id) or {}
        if record.get("status") == BatchPredictionStatus.RUNNING.value and record.get("execution_arn"):
            try:
                aws.client("stepfunctions").stop_execution(executionArn=str(record["execution_arn"]),
                                                           cause=f"model {model_id} deleted")
            except ClientError as error:  # an execution that already ended has nothing left to stop
                logger.warning("batch prediction not stopped", extra={"batch_prediction_id": batch_prediction_id,
                                                                      "detail": one_line(str(error))})
        aws.delete_prefixes(get_settings().artifact_bucket, [batch_prediction_prefix(batch_prediction_id)])
        table.delete_item(Key=_key(batch_prediction_id))
        table.delete_item(Key={"pk": pointer["pk"], "sk": pointer["sk"]})
    return len(pointers)


def _key(batch_prediction_id: str) -> dict[str, str]:
    return {"pk": keys.batch_prediction_pk(batch_prediction_id), "sk": keys.META}


def _uri(key: str) -> str:
    return f"s3://{get_settings().artifact_bucket}/{key}"


# ---------------------------------------------------------------- starting one


def parse_prefix(raw: Any) -> str:
    """The key prefix of ``s3://<data bucket>/<prefix>``: only this deployment's data bucket is read."""
    bucket_name = get_settings().data_bucket
    if not isinstance(raw, str) or not raw.startswith("s3://"):
        raise BadRequest(f'"s3_prefix" is required: s3://{bucket_name}/<prefix>/', code="invalid_s3_prefix")
    bucket, _, prefix = raw[len("s3://"):].partition("/")
    if bucket != bucket_name:
        raise BadRequest(f"s3_prefix must be in this deployment's data bucket ({bucket_name}), not in {bucket!r}",
                         code="invalid_s3_prefix")
    if len(prefix) > 1024 or any(not character.isprintable() for character in prefix):
        raise BadRequest("s3_prefix must be at most 1,024 printable characters after the bucket",
                         code="invalid_s3_prefix")
    return prefix


def start_batch_prediction(model_id: str, request: dict[str, Any]) -> dict[str, Any]:
    """Check the request, record the job and start its workflow; the record (202's body)."""
    unknown = sorted(set(request) - set(FIELDS))
    if unknown:
        raise BadRequest(f"unknown fields: {', '.join(unknown)} (allowed: {', '.join(FIELDS)})", code="unknown_field")
    prefix = parse_prefix(request.get("s3_prefix"))
    options = {
        "threshold": threshold_option(request.get("threshold"), from_text=False),
        "max_results": max_results_option(request.get("max_results"), from_text=False),
        "classes": classes_option(request.get("classes")),
    }
    video = parse_video_options(request.get("video"))
    model, version = serving(model_id, version_option(request.get("version")))  # 404 unknown, 409 nothing ready
    labels = read_artifact_json(keys.split_location(version["artifacts"]["labels"],
                                                    get_settings().artifact_bucket)[1]) or {}
    if options["classes"] is not None:
        known = [str(name) for name in labels.get("classes") or []]
        unknown_classes = [name for name in options["classes"] if name not in known]
        if unknown_classes:
            raise BadRequest(f"classes names labels this version does not know: {unknown_classes[:20]}; it knows "
                             f"{known[:50]}", code="invalid_classes")
    settings = get_settings()
    listed = aws.client("s3").list_objects_v2(Bucket=settings.data_bucket, Prefix=prefix, MaxKeys=1)
    if not listed.get("KeyCount"):
        raise BadRequest(f"no objects under s3://{settings.data_bucket}/{prefix}", code="no_objects")

    batch_prediction_id = uuid.uuid4().hex
    number = int(version["version"])
    now = aws.utc_now()
    options = {name: (list(value) if isinstance(value, tuple) else value) for name, value in options.items()
               if value is not None}
    item = {
        **_key(batch_prediction_id), "batch_prediction_id": batch_prediction_id,
        "status": BatchPredictionStatus.RUNNING.value, "model_id": model_id, "version": number,
        "task": model["task"], "source": f"s3://{settings.data_bucket}/{prefix}", "options": options,
        "video": video.to_dict(), "objects_done": 0, "objects_failed": 0, "frames": 0, "parts": 0,
        "created_at": now, "started_at": now,
    }
    # The record, and a pointer under the model, which deleting the model or the version follows to remove it.
    with _table().batch_writer() as writer:
        writer.put_item(Item=aws.to_dynamo(item))
        writer.put_item(Item={"pk": keys.model_pk(model_id), "sk": f"{_POINTER}{batch_prediction_id}",
                              "batch_prediction_id": batch_prediction_id, "version": number})
    execution_input = {
        "batch_prediction_id": batch_prediction_id, "bucket": settings.data_bucket, "prefix": prefix,
        "model_id": model_id, "version": number,
        "artifacts": {"model": version["artifacts"]["model"], "labels": version["artifacts"]["labels"]},
        # The S3 versions and hashes the record step pinned ({} for versions from before): workers load exactly those.
        "integrity": version.get("integrity") or {},
        "options": options, "video": video.to_dict(),
    }
    try:
        execution = aws.client("stepfunctions").start_execution(
            stateMachineArn=settings.batch_prediction_state_machine_arn, name=f"batch-{batch_prediction_id}",
            input=json.dumps(execution_input))
    except (ClientError, BotoCoreError) as error:
        reason = one_line(f"could not start the batch prediction workflow: {error}")
        logger.error("batch prediction not started", extra={"batch_prediction_id": batch_prediction_id,
                                                            "detail": reason})
        _settle(batch_prediction_id, BatchPredictionStatus.FAILED, failure_reason=reason)
        raise BatchPredictionUnavailable(f"batch prediction {batch_prediction_id} could not be started "
                                         f"({reason})") from None
    _table().update_item(Key=_key(batch_prediction_id), UpdateExpression="SET execution_arn = :a",
                         ExpressionAttributeValues={":a": execution["executionArn"]})
    item["execution_arn"] = execution["executionArn"]
    logger.info("batch prediction started", extra={"batch_prediction_id": batch_prediction_id,
                                                   "model_id": model_id, "version": number})
    return _answer(item, progress=False)


# ---------------------------------------------------------------- the workflow's last step


def finish(event: dict[str, Any]) -> dict[str, Any]:
    """Write manifest.json (the parts and the counts) and settle the record: ``succeeded``, or ``failed`` with the
    Map's error when the execution reached this step through its Catch."""
    batch_prediction_id = str(event["batch_prediction_id"])
    item = _read(batch_prediction_id)
    if item is None:
        raise NotFound(f"batch prediction {batch_prediction_id!r} does not exist", code="batch_prediction_not_found")
    settings = get_settings()
    prefix = batch_prediction_prefix(batch_prediction_id)
    parts = sorted(_uri(obj["Key"]) for page in aws.client("s3").get_paginator("list_objects_v2").paginate(
        Bucket=settings.artifact_bucket, Prefix=prefix + BATCH_PREDICTION_PARTS) for obj in page.get("Contents", []))
    counts = _counts(item)
    error = event.get("error")
    manifest = {
        "format": BATCH_PREDICTION_FORMAT, "batch_prediction_id": batch_prediction_id,
        "model_id": item["model_id"], "version": int(item["version"]), "source": item["source"],
        "counts": counts, "parts": parts,
    }
    aws.client("s3").put_object(Bucket=settings.artifact_bucket, Key=prefix + MANIFEST_FILE,
                                Body=json.dumps(manifest, indent=1).encode(), ContentType="application/json")
    if error:
        reason = one_line(f"{error.get('Error', 'error')}: {error.get('Cause', '')}")[:1000]
        settled = _settle(batch_prediction_id, BatchPredictionStatus.FAILED, failure_reason=reason,
                          objects_listed=counts["listed"])
    else:
        settled = _settle(batch_prediction_id, BatchPredictionStatus.SUCCEEDED, objects_listed=counts["listed"])
    logger.info("batch prediction finished", extra={"batch_prediction_id": batch_prediction_id,
                                                    "status": settled.get("status"), **counts})
    return {"batch_prediction_id": batch_prediction_id, "status": settled.get("status"), "counts": counts}


def _counts(item: dict[str, Any]) -> dict[str, Any]:
    done, failed = int(item.get("objects_done") or 0), int(item.get("objects_failed") or 0)
    return {"listed": done + failed, "done": done, "failed": failed, "frames": int(item.get("frames") or 0),
            "parts": int(item.get("parts") or 0)}


# ---------------------------------------------------------------- reading


def get_batch_prediction(batch_prediction_id: str, model_id: str | None = None) -> dict[str, Any]:
    """The job, settled first when unfinished; ``model_id`` (the nested route) must be its model."""
    item = _read(batch_prediction_id) if _ID.fullmatch(batch_prediction_id) else None
    if item is None or (model_id is not None and item.get("model_id") != model_id):
        raise NotFound(f"batch prediction {batch_prediction_id!r} does not exist", code="batch_prediction_not_found")
    return _answer(_reconcile(item), progress=True)


def _read(batch_prediction_id: str) -> dict[str, Any] | None:
    item = _table().get_item(Key=_key(batch_prediction_id), ConsistentRead=True).get("Item")
    return aws.from_dynamo(item) if item is not None else None


def _answer(item: dict[str, Any], *, progress: bool) -> dict[str, Any]:
    answer = {name: item[name] for name in _RECORD_FIELDS if name in item}
    counts = _counts(item)
    if item["status"] == BatchPredictionStatus.RUNNING:
        # Objects listed so far: the Map run's item count (null until the listing has begun, or when unknown).
        counts["listed"] = _listed_so_far(item) if progress else None
    answer["counts"] = counts
    prefix = batch_prediction_prefix(item["batch_prediction_id"])
    answer["results"] = {"parts": _uri(prefix + BATCH_PREDICTION_PARTS), "manifest": None}
    if item["status"] != BatchPredictionStatus.RUNNING and read_artifact_json(prefix + MANIFEST_FILE) is not None:
        answer["results"]["manifest"] = _uri(prefix + MANIFEST_FILE)
        answer["results"]["manifest_url"] = aws.presigning_client("s3").generate_presigned_url(
            "get_object", Params={"Bucket": get_settings().artifact_bucket, "Key": prefix + MANIFEST_FILE},
            ExpiresIn=URL_EXPIRY_SECONDS)
    return answer


def _listed_so_far(item: dict[str, Any]) -> int | None:
    if not item.get("execution_arn"):
        return None
    try:
        runs = aws.client("stepfunctions").list_map_runs(executionArn=item["execution_arn"]).get("mapRuns") or []
        if not runs:
            return None
        run = aws.client("stepfunctions").describe_map_run(mapRunArn=runs[0]["mapRunArn"])
    except (ClientError, BotoCoreError) as error:  # progress is a courtesy; the job's state is what counts
        logger.warning("could not read the map run", extra={"detail": one_line(str(error))})
        return None
    total = (run.get("itemCounts") or {}).get("total")
    return int(total) if total is not None else None


def _reconcile(item: dict[str, Any]) -> dict[str, Any]:
    """A running job whose execution ended without its last step (failed, timed out, stopped), or that never
    started, becomes ``failed``."""
    if item.get("status") != BatchPredictionStatus.RUNNING:
        return item
    batch_prediction_id = item["batch_prediction_id"]
    if not item.get("execution_arn"):
        if _age_seconds(item) > UNSTARTED_AFTER_SECONDS:
            return _settle(batch_prediction_id, BatchPredictionStatus.FAILED,
                           failure_reason="the batch prediction workflow never started")
        return item
    try:
        execution = aws.client("stepfunctions").describe_execution(executionArn=item["execution_arn"])
    except (ClientError, BotoCoreError) as error:  # the record stays as it is; the next read tries again
        logger.warning("could not describe the batch prediction's execution", extra={"detail": one_line(str(error))})
        return item
    status = execution.get("status")
    if status in _ENDED:
        reason = one_line(f"the workflow ended {status}: {execution.get('error') or ''} {execution.get('cause') or ''}")
        return _settle(batch_prediction_id, BatchPredictionStatus.FAILED, failure_reason=reason[:1000],
                       objects_listed=_counts(item)["listed"])
    return item


def _age_seconds(item: dict[str, Any]) -> float:
    created = datetime.strptime(str(item.get("created_at")), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    return (datetime.now(timezone.utc) - created).total_seconds()


def _settle(batch_prediction_id: str, status: BatchPredictionStatus, **fields: Any) -> dict[str, Any]:
    """Move a running job to its end; an ended one never changes (concurrent readers and the last step agree)."""
    values = {"status": status.value, "finished_at": aws.utc_now(), **fields}
    names = {f"#f{i}": name for i, name in enumerate(values)}
    try:
        response = _table().update_item(
            Key=_key(batch_prediction_id),
            UpdateExpression="SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(values))),
            ConditionExpression="#s = :running",
            ExpressionAttributeNames={**names, "#s": "status"},
            ExpressionAttributeValues={**{f":v{i}": aws.to_dynamo(v) for i, v in enumerate(values.values())},
                                       ":running": BatchPredictionStatus.RUNNING.value},
            ReturnValues="ALL_NEW",
        )
    except ClientError as error:
        if not aws.is_condition_failed(error):
            raise
        return _read(batch_prediction_id) or {}
    return aws.from_dynamo(response["Attributes"])
