"""Lambda handlers of the training workflow's task steps (statemachines/train.asl.json), logic in
``sightline.workflow``."""
from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from sightline import workflow

logger = Logger()


@logger.inject_lambda_context
def prepare_training(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """PrepareTrainingData: snapshot the manifest, describe the Batch job."""
    return workflow.prepare_training(event)


@logger.inject_lambda_context
def record_version(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """RecordModelVersion: store the trained version, promote it if it is at least as good."""
    return workflow.record_version(event)


@logger.inject_lambda_context
def record_failure(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """RecordTrainingFailure: store why the run failed."""
    return workflow.record_failure(event)
