"""Lambda handlers of the training workflow's task steps (statemachines/train.asl.json), logic in
``sightline.workflow``."""
from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from sightline import workflow
from sightline.observability import count, metrics, tracer

logger = Logger()


def _correlate(event: dict[str, Any]) -> None:
    # The execution's name: the same id on the API's start, these steps and the training job (its job name).
    if event.get("model_id") and event.get("version") is not None:
        logger.set_correlation_id(workflow.execution_name(str(event["model_id"]), int(event["version"])))


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def prepare_training(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """PrepareTrainingData: snapshot the manifest, describe the Batch job."""
    _correlate(event)
    return workflow.prepare_training(event)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def record_version(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """RecordModelVersion: store the trained version, promote it if it passes the model's promotion gate."""
    _correlate(event)
    answer = workflow.record_version(event)
    count("VersionsTrained")
    count("VersionsPromoted" if answer["promoted"] else "VersionsRejected")
    return answer


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def record_failure(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """RecordTrainingFailure: store why the run failed."""
    _correlate(event)
    answer = workflow.record_failure(event)
    count("VersionsFailed")
    return answer
