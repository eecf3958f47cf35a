"""The training workflow: starting it, and the Lambda task steps of ``statemachines/train.asl.json``.

PrepareTrainingData -> ``prepare_training``, RecordModelVersion -> ``record_version``,
RecordTrainingFailure -> ``record_failure``. Every step may run more than once (Lambda and Step Functions
retries), so each one is idempotent.
"""
from __future__ import annotations

import hashlib
import json
import re
from typing import Any, NoReturn

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from sightline import aws, events, model_registry, promotion
from sightline.config import get_settings
from sightline.contract import (
    CARD_FILE,
    CHECKPOINT_FILE,
    LABELS_FILE,
    METRICS_FILE,
    MODEL_FILE,
    PROGRESS_FILE,
    PROGRESS_FORMAT,
    VERSION_TRANSITIONS,
    JobEnvironment,
    ModelStatus,
    VersionStatus,
    checkpoint_prefix,
    manifest_key,
    states_leading_to,
    version_prefix,
)
from sightline.datasets.manifest import build_manifest
from sightline.datasets.snapshots import record_snapshot
from sightline.errors import Conflict, SightlineError
from sightline.training_failures import failure_reason, job_field, one_line

logger = Logger(child=True)

_BATCH_JOB_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


class TrainingUnavailable(SightlineError):
    """The training workflow could not be started (Step Functions refused or was unreachable)."""

    status = 503
    code = "training_unavailable"


class TrainingOutputInvalid(SightlineError):
    """A training output (or the manifest) is missing or unreadable where the contract says it is."""

    code = "training_output_invalid"


# ---------------------------------------------------------------- artifact locations


def s3_uri(key: str) -> str:
    return f"s3://{get_settings().artifact_bucket}/{key}"


def batch_job_name(model_id: str, version: int) -> str:
    """Batch job names allow letters, digits, hyphens and underscores, at most 128 characters."""
    return _BATCH_JOB_NAME_UNSAFE.sub("-", f"sightline-{model_id}-v{version}")[:128]


def execution_name(model_id: str, version: int) -> str:
    """One execution per version: Step Functions refuses a second start under the same name.
    (At most 80 characters; model ids are far shorter.)"""
    return f"{model_id}-v{version}"


# ---------------------------------------------------------------- starting a run


def start_training(model_id: str, version: int) -> str:
    """Start the workflow for a version already in the table and record its execution ARN.

    A start that fails leaves the version and the model failed with the reason (never stuck in
    ``training``) and raises ``TrainingUnavailable``.
    """
    settings = get_settings()
    name = execution_name(model_id, version)
    try:
        response = aws.client("stepfunctions").start_execution(
            stateMachineArn=settings.training_state_machine_arn,
            name=name,
            input=json.dumps({"model_id": model_id, "version": version}),
        )
        execution_arn = response["executionArn"]
    except ClientError as error:
        code = aws.error_code(error)
        if code != "ExecutionAlreadyExists":
            _fail_start(model_id, version, f"{code}: {aws.error_message(error)}")
        # Already started under this name (a retried request): the same run, so the same ARN.
        execution_arn = _execution_arn(settings.training_state_machine_arn, name)
    except BotoCoreError as error:
        _fail_start(model_id, version, str(error))
    model_registry.update_version(model_id, version, execution_arn=execution_arn)
    return execution_arn


def _execution_arn(state_machine_arn: str, name: str) -> str:
    # arn:aws:states:<region>:<account>:stateMachine:<machine> -> ...:execution:<machine>:<name>
    return state_machine_arn.replace(":stateMachine:", ":execution:", 1) + f":{name}"


def _fail_start(model_id: str, version: int, detail: str) -> NoReturn:
    logger.error(
        "could not start the training workflow", extra={"model_id": model_id, "version": version, "detail": detail}
    )
    reason = one_line(f"could not start the training workflow: {detail}")
    _mark_failed(model_id, version, reason)
    raise TrainingUnavailable(f"training could not be started; model {model_id} is marked failed ({reason})")


# ---------------------------------------------------------------- PrepareTrainingData


def prepare_training(event: dict[str, Any]) -> dict[str, Any]:
    """Snapshot the model's datasets into the version's manifest and describe the Batch job to run.

    The manifest is written once: a retry reuses it, so a version always trains on the data it first saw.
    """
    model_id, version_number = _target(event)
    model = model_registry.get_model(model_id)
    version = model_registry.get_version(model_id, version_number)
    if version["status"] != VersionStatus.TRAINING:
        raise Conflict(
            f"model {model_id} version {version_number} is {version['status']}, not training",
            code="version_not_training",
        )

    key = manifest_key(model_id, version_number)
    manifest = read_artifact_json(key)
    if manifest is None:
        # The version's own datasets: a retrain may train on others than the model was created with.
        built = build_manifest(
            list(version.get("datasets") or model["datasets"]), model["task"], get_settings().validation_fraction
        )
        # Conditional create: of two concurrent attempts only the first snapshot is kept, and both use it.
        manifest = built if _create_json(key, built) else read_artifact_json(key)
        if manifest is None:
            raise RuntimeError(f"manifest {key} vanished after it was written")
        logger.info("manifest written", extra={"key": key, "items": len(built.get("items", []))})
    else:
        logger.info("reusing the existing manifest", extra={"key": key})

    manifest_uri = s3_uri(key)
    snapshot = record_snapshot(manifest, model_id, version_number)
    model_registry.update_version(
        model_id,
        version_number,
        classes=list(manifest.get("classes", [])),
        snapshot=snapshot,
        artifacts={**(version.get("artifacts") or {}), "manifest": manifest_uri},
    )
    template = version.get("template") or model["template"]
    params = version.get("params") or model.get("params") or {}
    return {
        "model_id": model_id,
        "version": version_number,
        "job_name": batch_job_name(model_id, version_number),
        "environment": [
            {"Name": JobEnvironment.MANIFEST_URI, "Value": manifest_uri},
            {"Name": JobEnvironment.OUTPUT_URI, "Value": s3_uri(version_prefix(model_id, version_number))},
            {"Name": JobEnvironment.CHECKPOINT_URI, "Value": s3_uri(checkpoint_prefix(model_id, version_number))},
            {"Name": JobEnvironment.TEMPLATE, "Value": template},
            {"Name": JobEnvironment.PARAMS, "Value": json.dumps(params, sort_keys=True)},
            {"Name": JobEnvironment.CORRELATION_ID, "Value": execution_name(model_id, version_number)},
        ],
        "resources": batch_resources(params),
    }


# One GPU's share of an instance, as the job definition asks for one (template.yaml: 4 vCPUs, 15,000 MiB, which
# a g6.xlarge holds). A job on N GPUs asks for N shares: only a multi-GPU instance type can place it.
VCPUS_PER_GPU = 4
MEMORY_MIB_PER_GPU = 15_000


def batch_resources(params: dict[str, Any]) -> list[dict[str, str]]:
    """The Batch job's ``ContainerOverrides.ResourceRequirements`` for ``params.gpus`` (1 when absent: versions
    made before the param existed). Batch wants each value as a string."""
    gpus = int(params.get("gpus") or 1)
    return [{"Type": "GPU", "Value": str(gpus)}, {"Type": "VCPU", "Value": str(VCPUS_PER_GPU * gpus)},
            {"Type": "MEMORY", "Value": str(MEMORY_MIB_PER_GPU * gpus)}]


# ---------------------------------------------------------------- RecordModelVersion

# Bounded: each lost race means another recorder changed the serving version, which happens rarely.
_PROMOTION_ATTEMPTS = 10

# metrics.json fields kept out of the version item: the per-class breakdown, thresholds and confusion matrix grow
# with the classes (thousands would pass DynamoDB's 400 KB item limit). They stay in metrics.json
# (``artifacts.metrics``).
_METRICS_ONLY_IN_FILE = ("per_class", "assumed_thresholds", "confusion_matrix")


def record_version(event: dict[str, Any]) -> dict[str, Any]:
    """Store a trained version's metrics and artifacts, mark it ready and promote it if it is at least as
    good as the serving version by the same primary metric."""
    model_id, version_number = _target(event)
    job_id = job_field(event.get("job") or {}, "JobId", "jobId")
    version = model_registry.get_version(model_id, version_number)
    if version["status"] == VersionStatus.FAILED:
        raise Conflict(
            f"model {model_id} version {version_number} is already recorded as failed: {version.get('failure_reason')}",
            code="version_failed",
        )

    prefix = version_prefix(model_id, version_number)
    metrics = read_artifact_json(prefix + METRICS_FILE)
    labels = read_artifact_json(prefix + LABELS_FILE)
    missing = [name for name, found in ((METRICS_FILE, metrics), (LABELS_FILE, labels)) if found is None]
    if not _exists(prefix + MODEL_FILE):
        missing.insert(0, MODEL_FILE)
    if missing:
        raise TrainingOutputInvalid(f"the training job finished without {', '.join(missing)} in {s3_uri(prefix)}")
    primary_metric, score = _primary_score(metrics)
    classes = list(labels.get("classes") or version.get("classes") or [])

    artifacts = {
        **(version.get("artifacts") or {}),
        "model": s3_uri(prefix + MODEL_FILE),
        "labels": s3_uri(prefix + LABELS_FILE),
        "metrics": s3_uri(prefix + METRICS_FILE),
        "manifest": s3_uri(manifest_key(model_id, version_number)),
        "checkpoint": s3_uri(checkpoint_prefix(model_id, version_number) + CHECKPOINT_FILE),
    }
    if _exists(prefix + CARD_FILE):  # containers before the model card wrote none
        artifacts["card"] = s3_uri(prefix + CARD_FILE)
    # The objects predict will load, pinned: their S3 version and content hash (a later write to the key, by
    # another job or by hand, cannot change what this version serves).
    integrity = {"model": pin_artifact(prefix + MODEL_FILE), "labels": pin_artifact(prefix + LABELS_FILE)}
    # Only the call that moves the version out of training announces it: a repeated call stays quiet.
    became_ready = _finish_version(
        model_id,
        version_number,
        VersionStatus.READY,
        metrics={name: value for name, value in metrics.items() if name not in _METRICS_ONLY_IN_FILE},
        # Where training's starting weights came from ({"source": "s3" | "cache" | "download" | "none", ...}).
        weights=metrics.get("weights"),
        artifacts=artifacts,
        integrity=integrity,
        classes=classes,
        job_id=job_id or version.get("job_id"),
    )
    model_registry.raise_latest_version(model_id, version_number)
    if became_ready:
        events.publish(
            "ModelVersionReady",
            {"model_id": model_id, "version": version_number, "primary_metric": primary_metric, "score": score},
        )

    promoted, replaced, comparison = _promote_through_gate(model_id, version_number, metrics, classes)
    if comparison is not None:
        model_registry.update_version(model_id, version_number, promotion=comparison.as_record())
    if promoted:
        model_registry.update_version(model_id, version_number, promoted=True)
        if replaced != version_number:
            events.publish(
                "ModelVersionPromoted",
                {"model_id": model_id, "version": version_number, "previous_version": replaced,
                 "primary_metric": primary_metric, "score": score},
            )
    elif became_ready and comparison is not None:
        events.publish(MODEL_VERSION_REJECTED, {
            "model_id": model_id, "version": version_number, "serving_version": comparison.serving_version,
            "gate": comparison.gate, "metric": comparison.metric, "score": comparison.score,
            "serving_score": comparison.serving_score, "min_improvement": comparison.min_improvement,
            "reason": comparison.reason,
        })
    logger.info(
        "version recorded",
        extra={"model_id": model_id, "version": version_number, primary_metric: score, "promoted": promoted},
    )
    _start_queued_version(model_id)
    return {"model_id": model_id, "version": version_number, "status": VersionStatus.READY, "promoted": promoted}


MODEL_VERSION_FINISHED = "ModelVersionFinished"
MODEL_VERSION_REJECTED = "ModelVersionRejected"


def _start_queued_version(model_id: str) -> None:
    """A version finished (trained, failed or cancelled): start the one queued behind it, if any. The record
    steps cannot know the state machine (it names them, so it cannot be named back in the template): there a
    ``ModelVersionFinished`` event asks the retrain function to start it. Never fails the caller."""
    from sightline import retraining  # retraining starts workflows through this module

    try:
        if not get_settings().training_state_machine_arn:
            if model_registry.pending_version(model_id) is not None:
                events.publish(MODEL_VERSION_FINISHED, {"model_id": model_id})
            return
        started = retraining.start_queued_version(model_id)
    except Exception:  # noqa: BLE001 - the version's own outcome is recorded; the queued one stays queued
        logger.exception("could not start the queued version", extra={"model_id": model_id})
        return
    if started is not None:
        logger.info("queued version started", extra={"model_id": model_id, "version": started["version"]})


def _promote_through_gate(
    model_id: str, version_number: int, metrics: dict[str, Any], classes: list[str]
) -> tuple[bool, int | None, promotion.Comparison | None]:
    """(promoted, the serving version it replaced, the gate's comparison: None when an earlier call of this step
    already promoted it). The model's promotion policy decides (``sightline.promotion``). Each decision is a
    conditional write on the serving version it was made against; when another recorder got there first, decide
    again against theirs."""
    for _ in range(_PROMOTION_ATTEMPTS):
        model = model_registry.get_model(model_id)
        serving = model.get("serving_version")
        if serving == version_number:
            return True, serving, None
        serving_metrics = (model_registry.get_version(model_id, int(serving)).get("metrics") or {}) \
            if serving is not None else None
        comparison = promotion.compare(model["promotion"], metrics, serving, serving_metrics)
        if not comparison.passed:
            # The serving model stays; this run still succeeded, so the model is healthy.
            logger.info("version not promoted", extra={"model_id": model_id, "version": version_number,
                                                       "reason": comparison.reason})
            model_registry.update_model(model_id, status=ModelStatus.READY, failure_reason=None)
            return False, serving, comparison
        if model_registry.set_serving_version(model_id, version_number, replacing=serving, classes=classes):
            return True, serving, comparison
    raise Conflict(f"could not settle the serving version of model {model_id}: too many concurrent changes")


def _primary_score(metrics: dict[str, Any]) -> tuple[str, float]:
    name = metrics.get("primary_metric")
    if not isinstance(name, str) or not name:
        raise TrainingOutputInvalid("metrics.json does not name its primary_metric")
    value = metrics.get(name)
    if not _is_number(value):
        raise TrainingOutputInvalid(f"metrics.json has no numeric value for its primary metric {name!r}")
    return name, float(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value  # not NaN


# ---------------------------------------------------------------- RecordTrainingFailure


def record_failure(event: dict[str, Any]) -> dict[str, Any]:
    """Store why a run failed on the version (and on the model, which stays ready if it serves a version)."""
    model_id, version_number = _target(event)
    reason = failure_reason(event.get("error") or {})
    marked = _mark_failed(model_id, version_number, reason)
    if marked:
        events.publish("ModelVersionFailed", {"model_id": model_id, "version": version_number, "reason": reason})
    logger.info("version failed", extra={"model_id": model_id, "version": version_number, "reason": reason})
    _start_queued_version(model_id)
    return {"model_id": model_id, "version": version_number, "status": VersionStatus.FAILED, "reason": reason}


def _finish_version(model_id: str, version_number: int, status: VersionStatus, **fields: Any) -> bool:
    """Move a version into ``status`` where the state table allows it from the stored one (out of
    ``training``, once: a finished version never changes status again)."""
    allowed = states_leading_to(VERSION_TRANSITIONS, status)
    placeholders = {f":from{index}": state for index, state in enumerate(allowed)}
    return model_registry.update_version(
        model_id,
        version_number,
        condition=f"#status IN ({', '.join(placeholders)})",
        condition_values=placeholders,
        status=status,
        finished_at=aws.utc_now(),
        **fields,
    )


def _mark_failed(model_id: str, version_number: int, reason: str) -> bool:
    """Version failed (unless it already finished: a ready version stays ready); model failed only if it
    serves nothing, else it keeps serving and just carries the reason. Returns whether the version changed."""
    marked = _finish_version(
        model_id,
        version_number,
        VersionStatus.FAILED,
        failure_reason=reason,
    )
    if not marked:
        return False
    if not model_registry.fail_model_without_serving_version(model_id, reason):
        model_registry.update_model(model_id, failure_reason=reason)
    return True


# ---------------------------------------------------------------- cancel and progress


def cancel_training(model_id: str, version_number: int) -> dict[str, Any]:
    """``POST /v1/models/{id}/versions/{v}/cancel``: the version becomes ``cancelled`` at once (a final state, so
    the run's own end cannot overwrite it), its execution is stopped (which stops its Batch job), and the serving
    version, if any, keeps serving. Cancelling a cancelled version again answers the same; any other finished
    version is a 409."""
    version = model_registry.get_version(model_id, version_number)
    if version["status"] == VersionStatus.CANCELLED:
        return _cancelled(model_id, version_number)
    reason = "cancelled on request"
    if not _finish_version(model_id, version_number, VersionStatus.CANCELLED, failure_reason=reason):
        status = model_registry.get_version(model_id, version_number)["status"]
        if status == VersionStatus.CANCELLED:
            return _cancelled(model_id, version_number)
        raise Conflict(f"version {version_number} of model {model_id!r} is {status}, not training; only a training "
                       "version can be cancelled", code="version_not_training")
    if version.get("execution_arn"):
        try:
            aws.client("stepfunctions").stop_execution(executionArn=version["execution_arn"], cause=reason)
        except ClientError as error:  # already over: nothing left to stop
            logger.info("execution already stopped", extra={"error": aws.error_message(error)})
    for job_id in _training_job_ids(model_id, version_number, version.get("job_id")):
        try:
            aws.client("batch").terminate_job(jobId=job_id, reason=reason)
        except ClientError as error:
            logger.info("job already over", extra={"error": aws.error_message(error)})
    model_registry.fail_model_without_serving_version(model_id, f"version {version_number} was cancelled")
    events.publish("ModelVersionCancelled", {"model_id": model_id, "version": version_number})
    logger.info("version cancelled", extra={"model_id": model_id, "version": version_number})
    _start_queued_version(model_id)
    return _cancelled(model_id, version_number)


def _training_job_ids(model_id: str, version_number: int, recorded: str | None) -> list[str]:
    """The version's Batch job: recorded when the run ended, else found by its name in the training queue (a
    stopped execution does not always stop the job it submitted)."""
    if recorded:
        return [recorded]
    queue = get_settings().training_job_queue
    if not queue:
        return []
    jobs = aws.client("batch").list_jobs(
        jobQueue=queue, filters=[{"name": "JOB_NAME", "values": [batch_job_name(model_id, version_number)]}])
    return [job["jobId"] for job in jobs.get("jobSummaryList", [])
            if job.get("status") not in ("SUCCEEDED", "FAILED")]


def _cancelled(model_id: str, version_number: int) -> dict[str, Any]:
    return {"model_id": model_id, "version": version_number, "status": str(VersionStatus.CANCELLED)}


def training_progress(model_id: str, version_number: int) -> dict[str, Any] | None:
    """What the training job last wrote about its epochs (``progress.json``), or None before the first epoch.
    Unreadable progress is left out rather than failing the answer: it is a view, not a record."""
    try:
        document = read_artifact_json(version_prefix(model_id, version_number) + PROGRESS_FILE)
    except TrainingOutputInvalid:
        return None
    return document if isinstance(document, dict) and document.get("format") == PROGRESS_FORMAT else None


# ---------------------------------------------------------------- helpers


def _target(event: dict[str, Any]) -> tuple[str, int]:
    model_id = event.get("model_id")
    version = event.get("version")
    if not isinstance(model_id, str) or not model_id:
        raise ValueError(f"event has no model_id: {event!r}")
    if isinstance(version, bool) or not isinstance(version, (int, str)) or not str(version).isdigit():
        raise ValueError(f"event has no version number: {event!r}")
    return model_id, int(version)


def read_artifact_json(key: str) -> Any | None:
    """The JSON object at ``key`` in the artifact bucket, or None when there is none."""
    try:
        body = aws.client("s3").get_object(Bucket=get_settings().artifact_bucket, Key=key)["Body"].read()
    except ClientError as error:
        if aws.is_not_found(error):
            return None
        raise
    try:
        return json.loads(body)
    except ValueError:
        raise TrainingOutputInvalid(f"{s3_uri(key)} is not valid JSON") from None


def _create_json(key: str, document: Any) -> bool:
    """Write ``document`` at ``key`` unless something is already there; False when it was."""
    try:
        aws.client("s3").put_object(
            Bucket=get_settings().artifact_bucket,
            Key=key,
            Body=json.dumps(document, separators=(",", ":")).encode(),
            ContentType="application/json",
            IfNoneMatch="*",
        )
        return True
    except ClientError as error:
        if aws.is_condition_failed(error):
            return False
        raise


_HASH_CHUNK = 1024 * 1024


def pin_artifact(key: str) -> dict[str, str | None]:
    """``{"version_id", "sha256"}`` of the current object at ``key`` in the artifact bucket (the version id is None
    in an unversioned bucket). The hash is of the very version named, read whole in chunks."""
    s3 = aws.client("s3")
    bucket = get_settings().artifact_bucket
    version_id = s3.head_object(Bucket=bucket, Key=key).get("VersionId")
    if version_id == "null":  # written before versioning was enabled
        version_id = None
    response = s3.get_object(Bucket=bucket, Key=key, **({"VersionId": version_id} if version_id else {}))
    digest = hashlib.sha256()
    for chunk in iter(lambda: response["Body"].read(_HASH_CHUNK), b""):
        digest.update(chunk)
    return {"version_id": version_id, "sha256": digest.hexdigest()}


def _exists(key: str) -> bool:
    try:
        aws.client("s3").head_object(Bucket=get_settings().artifact_bucket, Key=key)
        return True
    except ClientError as error:
        if aws.is_not_found(error):
            return False
        raise


# ---------------------------------------------------------------- for the execution reconciler (sightline.reconciler)

mark_failed = _mark_failed
finish_version = _finish_version
training_job_ids = _training_job_ids
start_queued_version_after = _start_queued_version


def execution_arn_of(model_id: str, version: int) -> str:
    """The ARN the version's execution has (or would have) in the training state machine."""
    return _execution_arn(get_settings().training_state_machine_arn, execution_name(model_id, version))
