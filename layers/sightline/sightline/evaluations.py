"""Evaluations: a trained version measured on any registered dataset, as a CPU Batch job.

``POST /v1/models/{id}/versions/{v}/evaluations`` builds the dataset's manifest here (the workflow's manifest
builder), stores it under ``evaluations/<id>/``, records the evaluation (``queued``) and submits the job
(``python -m sightline_training evaluate``). The job writes ``evaluation.json`` (or ``failure.json``) beside the
manifest and touches nothing else; reading an unfinished evaluation settles it from those files and the Batch
job's state (reconcile on read), so a job that died, was never placed or was terminated still ends ``failed``.
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
    EVALUATION_FAILURE_FILE,
    EVALUATION_FILE,
    MANIFEST_FILE,
    MODEL_FILE,
    DatasetStatus,
    EvaluationEnvironment,
    EvaluationStatus,
    VersionStatus,
    evaluation_prefix,
    manifest_key,
    snapshot_id,
    version_prefix,
)
from sightline.datasets import store as dataset_store
from sightline.datasets.manifest import TRAIN as TRAIN_SPLIT, build_evaluation_manifest
from sightline.errors import BadRequest, Conflict, NotFound, SightlineError
from sightline.training_failures import one_line
from sightline.workflow import read_artifact_json

logger = Logger(child=True)

MAX_COMPARED = 10
# A record without a job id this old is one whose submission never happened (the API died between its writes).
UNSUBMITTED_AFTER_SECONDS = 300
URL_EXPIRY_SECONDS = 3600
_ID = re.compile(r"[0-9a-f]{32}")
_UNFINISHED = (EvaluationStatus.QUEUED, EvaluationStatus.RUNNING)
_RECORD_FIELDS = ("evaluation_id", "status", "model_id", "version", "dataset", "task", "snapshot", "manifest",
                  "include_training_images", "excluded_training_images", "job_id", "created_at", "updated_at", "metrics", "images", "class_mismatch", "failure_reason")


class EvaluationUnavailable(SightlineError):
    """The evaluation job could not be submitted (Batch refused or was unreachable)."""

    status = 503
    code = "evaluation_unavailable"


def _pk(evaluation_id: str) -> str:
    return f"EVALUATION#{evaluation_id}"


def _table() -> Any:
    return aws.table(get_settings().table_name)


def _batch() -> Any:
    return aws.client("batch")


def _uri(key: str) -> str:
    return f"s3://{get_settings().artifact_bucket}/{key}"


def _public(item: dict[str, Any]) -> dict[str, Any]:
    return {name: aws.from_dynamo(item[name]) for name in _RECORD_FIELDS if name in item}


# ---------------------------------------------------------------- starting one


def start_evaluation(model_id: str, version: int, request: dict[str, Any]) -> dict[str, Any]:
    """Check the version and the dataset, write the manifest and the record, submit the job; the record."""
    unknown = sorted(set(request) - {"dataset", "include_training_images"})
    if unknown:
        raise BadRequest(f"unknown fields: {', '.join(unknown)} (allowed: dataset, include_training_images)",
                         code="unknown_field")
    dataset = request.get("dataset")
    if not isinstance(dataset, str) or not dataset:
        raise BadRequest('"dataset" is required: the name of a registered dataset', code="invalid_dataset")
    include_training = request.get("include_training_images", False)
    if not isinstance(include_training, bool):
        raise BadRequest(f"include_training_images must be true or false, got {include_training!r}",
                         code="invalid_include_training_images")
    model = model_registry.get_model(model_id)
    record = model_registry.get_version(model_id, version)
    if record.get("status") != VersionStatus.READY or not (record.get("artifacts") or {}).get("model"):
        raise Conflict(f"model {model_id} version {version} is {record.get('status')}: only a trained version "
                       f"(with {MODEL_FILE}) can be evaluated", code="version_not_trained")
    summary = dataset_store.get_dataset_summary(dataset)
    if summary is None:
        raise NotFound(f"dataset {dataset!r} does not exist", code="dataset_not_found")
    if summary.get("status") != DatasetStatus.READY:
        raise Conflict(f"dataset {dataset!r} is {summary.get('status')}, not ready", code="dataset_not_ready")
    manifest = build_evaluation_manifest(dataset, model["task"])
    excluded = 0
    if not include_training:
        manifest, excluded = _without_training_images(manifest, model_id, version, dataset)

    settings = get_settings()
    evaluation_id = uuid.uuid4().hex
    prefix = evaluation_prefix(evaluation_id)
    aws.client("s3").put_object(Bucket=settings.artifact_bucket, Key=prefix + MANIFEST_FILE,
                                Body=json.dumps(manifest).encode(), ContentType="application/json")
    now = aws.utc_now()
    item = {
        "pk": _pk(evaluation_id), "sk": "META", "evaluation_id": evaluation_id, "status": EvaluationStatus.QUEUED.value,
        "model_id": model_id, "version": version, "dataset": dataset, "task": model["task"],
        "snapshot": snapshot_id(manifest), "manifest": _uri(prefix + MANIFEST_FILE),
        "include_training_images": include_training, "excluded_training_images": excluded,
        "created_at": now, "updated_at": now,
    }
    _table().put_item(Item=item)
    # A pointer in the model's partition: deleting the model or the version finds its evaluations there.
    _table().put_item(Item={"pk": keys.model_pk(model_id), "sk": _POINTER + evaluation_id,
                            "evaluation_id": evaluation_id, "evaluated_version": version})
    environment = {
        EvaluationEnvironment.MANIFEST_URI: _uri(prefix + MANIFEST_FILE),
        EvaluationEnvironment.MODEL_URI: _uri(version_prefix(model_id, version)),
        EvaluationEnvironment.OUTPUT_URI: _uri(prefix),
    }
    try:
        job = _batch().submit_job(
            jobName=f"sightline-evaluation-{evaluation_id}",
            jobQueue=settings.evaluation_job_queue,
            jobDefinition=settings.evaluation_job_definition,
            containerOverrides={"environment": [{"name": str(k), "value": v} for k, v in environment.items()]},
        )
    except (ClientError, BotoCoreError) as error:
        reason = one_line(f"could not submit the evaluation job: {error}")
        logger.error("evaluation not submitted", extra={"evaluation_id": evaluation_id, "detail": reason})
        _settle(evaluation_id, EvaluationStatus.FAILED, failure_reason=reason)
        raise EvaluationUnavailable(f"evaluation {evaluation_id} could not be started ({reason})") from None
    item["job_id"] = job["jobId"]
    _table().update_item(Key={"pk": _pk(evaluation_id), "sk": "META"}, UpdateExpression="SET job_id = :j",
                         ExpressionAttributeValues={":j": job["jobId"]})
    logger.info("evaluation submitted", extra={"evaluation_id": evaluation_id, "job_id": job["jobId"]})
    return _public(item)


def _without_training_images(manifest: dict[str, Any], model_id: str, version: int,
                             dataset: str) -> tuple[dict[str, Any], int]:
    """``manifest`` less the images the version trained on (its training manifest's train split, by content id):
    scores on them flatter the model. The manifest and how many images were left out."""
    trained = read_artifact_json(manifest_key(model_id, version)) or {}
    seen = {item.get("id") for item in trained.get("items", []) if item.get("split") == TRAIN_SPLIT}
    kept = [item for item in manifest["items"] if item["id"] not in seen]
    excluded = len(manifest["items"]) - len(kept)
    if not kept:
        raise BadRequest(f"every image of dataset {dataset!r} ({excluded}) trained model {model_id} version "
                         f"{version}: nothing is left to evaluate it on (include_training_images: true scores them "
                         f"anyway)", code="no_evaluation_data")
    return {**manifest, "items": kept}, excluded


# ---------------------------------------------------------------- deleting

_POINTER = "EVALUATION#"


def delete_evaluations_of(model_id: str, version: int | None = None) -> int:
    """Remove the evaluations of a model (or of one of its versions): records, pointers and files, stopping
    unfinished jobs first so that none writes its report afterwards. How many were removed."""
    table = _table()
    pointers = [item for item in model_registry.model_pointers(model_id, _POINTER)
                if version is None or int(item["evaluated_version"]) == version]
    for pointer in pointers:
        evaluation_id = str(pointer["evaluation_id"])
        record = _read(evaluation_id) or {}
        if record.get("status") in _UNFINISHED and record.get("job_id"):
            try:
                _batch().terminate_job(jobId=str(record["job_id"]), reason=f"model {model_id} deleted")
            except ClientError as error:  # a job Batch no longer knows has nothing left to stop
                logger.warning("evaluation job not stopped", extra={"evaluation_id": evaluation_id,
                                                                    "detail": one_line(str(error))})
        aws.delete_prefixes(get_settings().artifact_bucket, [evaluation_prefix(evaluation_id)])
        table.delete_item(Key={"pk": _pk(evaluation_id), "sk": "META"})
        table.delete_item(Key={"pk": pointer["pk"], "sk": pointer["sk"]})
    return len(pointers)


# ---------------------------------------------------------------- reading


def _check_id(evaluation_id: str) -> None:
    if not _ID.fullmatch(evaluation_id):
        raise NotFound(f"evaluation {evaluation_id!r} does not exist", code="evaluation_not_found")


def _read(evaluation_id: str) -> dict[str, Any] | None:
    return _table().get_item(Key={"pk": _pk(evaluation_id), "sk": "META"}, ConsistentRead=True).get("Item")


def get_evaluation(evaluation_id: str) -> dict[str, Any]:
    """The evaluation, settled first when it is unfinished; with a presigned link to evaluation.json once done."""
    _check_id(evaluation_id)
    item = _read(evaluation_id)
    if item is None:
        raise NotFound(f"evaluation {evaluation_id!r} does not exist", code="evaluation_not_found")
    return _answer(_reconcile(item))


def _answer(item: dict[str, Any]) -> dict[str, Any]:
    answer = _public(item)
    if answer["status"] == EvaluationStatus.SUCCEEDED:
        key = evaluation_prefix(answer["evaluation_id"]) + EVALUATION_FILE
        answer["report"] = {
            "uri": _uri(key), "expires_in": URL_EXPIRY_SECONDS,
            "url": aws.presigning_client("s3").generate_presigned_url(
                "get_object", Params={"Bucket": get_settings().artifact_bucket, "Key": key},
                ExpiresIn=URL_EXPIRY_SECONDS),
        }
    return answer


def _reconcile(item: dict[str, Any]) -> dict[str, Any]:
    """An unfinished evaluation settled from what its job left in S3 and, failing that, from the Batch job."""
    if item.get("status") not in _UNFINISHED:
        return item
    evaluation_id = item["evaluation_id"]
    prefix = evaluation_prefix(evaluation_id)
    report = read_artifact_json(prefix + EVALUATION_FILE)
    if report is not None:
        return _settle(evaluation_id, EvaluationStatus.SUCCEEDED, metrics=report.get("metrics") or {},
                       images=report.get("images") or {}, class_mismatch=report.get("class_mismatch") or {})
    if not item.get("job_id"):
        # The API wrote the record but died before it submitted the job (or recorded its id).
        if _age_seconds(item) > UNSUBMITTED_AFTER_SECONDS:
            return _settle(evaluation_id, EvaluationStatus.FAILED, failure_reason="the evaluation job was never submitted")
        return item
    job = _describe_job(item["job_id"])
    if job is None:
        return item
    status = job.get("status")
    if status in ("STARTING", "RUNNING") and item["status"] == EvaluationStatus.QUEUED:
        return _settle(evaluation_id, EvaluationStatus.RUNNING)
    if status in ("SUCCEEDED", "FAILED"):
        # The job may have written its report between the read above and now.
        report = read_artifact_json(prefix + EVALUATION_FILE)
        if report is not None:
            return _reconcile(item)
        failure = read_artifact_json(prefix + EVALUATION_FAILURE_FILE) or {}
        reason = failure.get("reason") or job.get("statusReason") or f"the evaluation job ended {status}"
        if status == "SUCCEEDED" and not failure:
            reason = f"the evaluation job ended without {EVALUATION_FILE}"
        return _settle(evaluation_id, EvaluationStatus.FAILED, failure_reason=one_line(reason))
    return item


def _age_seconds(item: dict[str, Any]) -> float:
    created = datetime.strptime(str(item.get("created_at")), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    return (datetime.now(timezone.utc) - created).total_seconds()


def _describe_job(job_id: str) -> dict[str, Any] | None:
    """The Batch job; None when Batch could not be asked. A job Batch no longer knows (it forgets finished jobs
    after about a week) without a report is a failure."""
    try:
        jobs = _batch().describe_jobs(jobs=[job_id]).get("jobs") or []
    except (ClientError, BotoCoreError) as error:  # the record stays as it is; the next read tries again
        logger.warning("could not describe the evaluation job", extra={"job_id": job_id, "detail": str(error)})
        return None
    return jobs[0] if jobs else {"jobId": job_id, "status": "FAILED", "statusReason": "Batch no longer knows the job"}


def _settle(evaluation_id: str, status: EvaluationStatus, **fields: Any) -> dict[str, Any]:
    """Move an unfinished evaluation on; a finished one is never changed (concurrent readers agree)."""
    values = {"status": status.value, "updated_at": aws.utc_now(), **fields}
    names = {f"#f{i}": name for i, name in enumerate(values)}
    expression = "SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(values)))
    try:
        response = _table().update_item(
            Key={"pk": _pk(evaluation_id), "sk": "META"}, UpdateExpression=expression,
            ConditionExpression="#s IN (:queued, :running)",
            ExpressionAttributeNames={**names, "#s": "status"},
            ExpressionAttributeValues={**{f":v{i}": aws.to_dynamo(v) for i, v in enumerate(values.values())},
                                       ":queued": EvaluationStatus.QUEUED.value,
                                       ":running": EvaluationStatus.RUNNING.value},
            ReturnValues="ALL_NEW",
        )
    except ClientError as error:
        if not aws.is_condition_failed(error):
            raise
        return _read(evaluation_id) or {}
    return response["Attributes"]


# ---------------------------------------------------------------- comparing


def parse_ids(raw: str | None) -> list[str]:
    ids = list(dict.fromkeys(part.strip() for part in (raw or "").split(",") if part.strip()))
    if not ids:
        raise BadRequest("ids is required: evaluation ids separated by commas", code="invalid_ids")
    if len(ids) > MAX_COMPARED:
        raise BadRequest(f"at most {MAX_COMPARED} evaluations can be compared, got {len(ids)}", code="invalid_ids")
    return ids


def compare(ids: list[str]) -> dict[str, Any]:
    """The evaluations side by side: one column each (in the order asked), one row per metric that every
    finished one has. Unknown ids: a 404 naming all of them."""
    items: dict[str, dict[str, Any]] = {}
    for evaluation_id in ids:
        item = _read(evaluation_id) if _ID.fullmatch(evaluation_id) else None
        if item is not None:
            items[evaluation_id] = item
    unknown = [evaluation_id for evaluation_id in ids if evaluation_id not in items]
    if unknown:
        raise NotFound(f"no such evaluations: {', '.join(unknown)}", code="evaluation_not_found")
    columns = [_public(_reconcile(items[evaluation_id])) for evaluation_id in ids]
    measured = [column.get("metrics") or {} for column in columns if column["status"] == EvaluationStatus.SUCCEEDED]
    names = sorted(set.intersection(*(set(m) for m in measured))) if measured else []
    rows = [{"metric": name, "values": [(column.get("metrics") or {}).get(name) for column in columns]}
            for name in names]
    heads = [{name: column.get(name) for name in ("evaluation_id", "status", "model_id", "version", "dataset",
                                                    "snapshot", "failure_reason") if name in column}
             for column in columns]
    return {"evaluations": heads, "rows": rows}
