"""What the training state machine's own status changes say, reconciled with the table.

EventBridge carries "Step Functions Execution Status Change" events (source ``aws.states``) for every execution;
a rule on the training state machine's FAILED, TIMED_OUT and ABORTED ones invokes ``reconcile_execution``. Its
record steps normally finish a version themselves; this covers the runs they never reached: an execution stopped
by hand (ABORTED: the version becomes ``cancelled``), one that timed out, or one whose failure step failed too
(the version becomes ``failed`` with the reason). A version already in a final state (``ready``, ``failed``,
``cancelled``) is left as it is. Either way the version queued behind it, if any, starts.
"""
from __future__ import annotations

import json
import re
import time
from datetime import datetime, timezone
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from sightline import aws, events, model_registry, workflow
from sightline.contract import VersionStatus
from sightline.errors import NotFound
from sightline.training_failures import one_line

logger = Logger(child=True)

STATUS_CHANGE = "Step Functions Execution Status Change"
ENDED_BADLY = ("FAILED", "TIMED_OUT", "ABORTED")
_EXECUTION_NAME = re.compile(r"(?P<model_id>.+)-v(?P<version>[0-9]+)")
# A training version whose execution does not exist this long after the version was written never started (the
# API died between the two writes): it is failed when it blocks a new version.
NEVER_STARTED_AFTER_SECONDS = 300


def reconcile_execution(event: dict[str, Any]) -> dict[str, Any]:
    """A status change of a training execution: settle its version if the run ended without recording it."""
    detail = event.get("detail") or {}
    status = str(detail.get("status") or "")
    target = _target(detail)
    if target is None:
        logger.warning("status change of an execution that names no version", extra={"detail": detail})
        return {"outcome": "ignored", "reason": "no model version"}
    model_id, version_number = target
    answer: dict[str, Any] = {"model_id": model_id, "version": version_number, "execution_status": status}
    if status not in ENDED_BADLY:
        return {**answer, "outcome": "ignored"}
    try:
        version = model_registry.get_version(model_id, version_number)
    except NotFound:
        return {**answer, "outcome": "ignored", "reason": "no such version (deleted)"}
    if version["status"] != VersionStatus.TRAINING:
        outcome = "already_final"  # the record steps or a cancel got there first; never overwritten
    elif status == "ABORTED":
        outcome = _cancel(model_id, version_number, version, detail)
    else:
        outcome = _fail(model_id, version_number, detail, status)
    logger.info("execution status change reconciled", extra={**answer, "outcome": outcome})
    if outcome != "already_final":
        workflow.start_queued_version_after(model_id)
    return {**answer, "outcome": outcome}


def _target(detail: dict[str, Any]) -> tuple[str, int] | None:
    """(model id, version) from the execution's input, else from its name ``<model_id>-v<n>``."""
    raw = detail.get("input")
    try:
        document = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        document = None
    if isinstance(document, dict) and isinstance(document.get("model_id"), str) \
            and str(document.get("version", "")).isdigit():
        return document["model_id"], int(document["version"])
    name = detail.get("name") or str(detail.get("executionArn") or "").rsplit(":", 1)[-1]
    match = _EXECUTION_NAME.fullmatch(str(name))
    return (match["model_id"], int(match["version"])) if match else None


def _fail(model_id: str, version_number: int, detail: dict[str, Any], status: str) -> str:
    cause = detail.get("cause") or detail.get("error")
    reason = one_line(f"the training execution ended {status}" + (f": {cause}" if cause else ""))
    if not workflow.mark_failed(model_id, version_number, reason):
        return "already_final"
    events.publish("ModelVersionFailed", {"model_id": model_id, "version": version_number, "reason": reason})
    return "failed"


def _cancel(model_id: str, version_number: int, version: dict[str, Any], detail: dict[str, Any]) -> str:
    reason = one_line("the training execution was stopped" + (f": {detail['cause']}" if detail.get("cause") else ""))
    if not workflow.finish_version(model_id, version_number, VersionStatus.CANCELLED, failure_reason=reason):
        return "already_final"
    # A stopped execution does not always stop the Batch job it submitted.
    for job_id in workflow.training_job_ids(model_id, version_number, version.get("job_id")):
        try:
            aws.client("batch").terminate_job(jobId=job_id, reason=reason)
        except ClientError as error:
            logger.info("job already over", extra={"error": aws.error_message(error)})
    model_registry.fail_model_without_serving_version(model_id, f"version {version_number} was cancelled")
    events.publish("ModelVersionCancelled", {"model_id": model_id, "version": version_number, "reason": reason})
    return "cancelled"


def settle_if_over(model_id: str, version_number: int) -> bool:
    """A training version blocks a new one: check its execution's real state first. Settle the version as
    ``reconcile_execution`` would when the run is over (ended badly, or never started); True when the version is
    no longer training. Never starts the queued version (the caller starts what it asked for)."""
    version = model_registry.get_version(model_id, version_number)
    if version["status"] != VersionStatus.TRAINING:
        return True
    arn = version.get("execution_arn") or workflow.execution_arn_of(model_id, version_number)
    try:
        execution = aws.client("stepfunctions").describe_execution(executionArn=arn)
    except ClientError as error:
        if aws.error_code(error) != "ExecutionDoesNotExist" or _age_seconds(version) < NEVER_STARTED_AFTER_SECONDS:
            return False
        reason = "the training workflow never started (no execution was found)"
        if workflow.mark_failed(model_id, version_number, reason):
            events.publish("ModelVersionFailed", {"model_id": model_id, "version": version_number, "reason": reason})
        logger.warning("version without an execution failed", extra={"model_id": model_id, "version": version_number})
        return True
    status = execution.get("status")
    if status not in ENDED_BADLY:
        return False
    detail = {"status": status, "cause": execution.get("cause"), "error": execution.get("error")}
    if status == "ABORTED":
        _cancel(model_id, version_number, version, detail)
    else:
        _fail(model_id, version_number, detail, status)
    logger.info("a blocking version's execution had ended", extra={"model_id": model_id, "version": version_number,
                                                                    "execution_status": status})
    return True


def _age_seconds(version: dict[str, Any]) -> float:
    created = datetime.strptime(version["created_at"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    return time.time() - created.timestamp()
