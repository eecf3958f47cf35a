"""Why a training run failed, in one line: parsed from what Step Functions hands its Catch (a Batch job
description for TrainModel, a Lambda error for the Lambda steps, free text for Step Functions' own errors)."""
from __future__ import annotations

import json
from typing import Any

# Failure reasons end up in API answers and events: one line, bounded.
MAX_REASON_CHARS = 500


def failure_reason(error: dict[str, Any]) -> str:
    """A one-line reason from a Step Functions Catch ``{"Error", "Cause"}``.

    The cause is a Batch job description for TrainModel, a Lambda error object for the Lambda steps, or free
    text for Step Functions' own errors (timeouts).
    """
    error_name = str(error.get("Error") or "unknown error")
    raw_cause = error.get("Cause")
    cause: Any = raw_cause
    if isinstance(raw_cause, str):
        try:
            cause = json.loads(raw_cause)
        except ValueError:
            cause = raw_cause
    if isinstance(cause, dict):
        if job_field(cause, "JobId", "jobId") or job_field(cause, "Status", "status") in ("FAILED", "SUCCEEDED"):
            return one_line(_batch_reason(cause))
        message = cause.get("errorMessage")
        if message:
            kind = cause.get("errorType") or error_name
            return one_line(f"{kind}: {message}")
    if isinstance(cause, str) and cause.strip():
        return one_line(f"{error_name}: {cause}")
    return one_line(error_name)


def _batch_reason(job: dict[str, Any]) -> str:
    """'training job <name> failed: <why> (exit code N; log stream S)' from a describeJobs job."""
    container = job_field(job, "Container", "container") or {}
    attempts = job_field(job, "Attempts", "attempts") or []
    last_attempt = attempts[-1] if attempts else {}
    attempt_container = job_field(last_attempt, "Container", "container") or {}

    why = (
        job_field(container, "Reason", "reason")
        or job_field(attempt_container, "Reason", "reason")
        or job_field(job, "StatusReason", "statusReason")
        or job_field(last_attempt, "StatusReason", "statusReason")
        or "no reason given"
    )
    details = []
    exit_code = job_field(container, "ExitCode", "exitCode")
    if exit_code is None:
        exit_code = job_field(attempt_container, "ExitCode", "exitCode")
    if exit_code is not None:
        details.append(f"exit code {exit_code}")
    log_stream = job_field(container, "LogStreamName", "logStreamName") or job_field(
        attempt_container, "LogStreamName", "logStreamName"
    )
    if log_stream:
        details.append(f"log stream {log_stream}")
    name = job_field(job, "JobName", "jobName") or job_field(job, "JobId", "jobId")
    text = f"training job {name} failed: {why}" if name else f"training job failed: {why}"
    return f"{text} ({'; '.join(details)})" if details else text


def one_line(text: str) -> str:
    collapsed = " ".join(str(text).split())
    return collapsed if len(collapsed) <= MAX_REASON_CHARS else collapsed[: MAX_REASON_CHARS - 1] + "…"


def job_field(job: dict[str, Any], sfn_name: str, boto_name: str) -> Any:
    """Step Functions capitalises describeJobs keys (JobId); boto3 does not (jobId). Accept both."""
    if not isinstance(job, dict):
        return None
    value = job.get(sfn_name)
    return value if value is not None else job.get(boto_name)
