"""TrainingReconciler: a Step Functions execution status change (FAILED, TIMED_OUT, ABORTED) of the training state
machine -> its version failed or cancelled unless already final, and the queued version started (logic in
``sightline.reconciler``)."""
from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from sightline import reconciler
from sightline.observability import count, metrics, tracer

logger = Logger()


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # The execution's name (<model_id>-v<n>) ties these log lines to the API call's and the training job's.
    logger.set_correlation_id(str((event.get("detail") or {}).get("name") or event.get("id") or ""))
    answer = reconciler.reconcile_execution(event)
    if answer.get("outcome") in ("failed", "cancelled"):
        count(f"VersionsReconciled{answer['outcome'].capitalize()}")
    return answer
