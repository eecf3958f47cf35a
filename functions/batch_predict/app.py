"""Lambda handlers of the batch prediction workflow (statemachines/batch_predict.asl.json): the Distributed Map's
item processor predicts one batch of objects, and the last step records the job's end. Logic in
``sightline.batch_prediction_worker`` and ``sightline.batch_predictions``."""
from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from sightline import batch_prediction_worker, batch_predictions
from sightline.observability import tracer

logger = Logger()


def _correlate(event: dict[str, Any]) -> None:
    batch_input = event.get("BatchInput") or event
    if batch_input.get("batch_prediction_id"):
        logger.set_correlation_id(f"batch-{batch_input['batch_prediction_id']}")


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def predict_batch(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """PredictBatch: ``{"BatchInput", "Items"}`` from the Map's ItemBatcher; with ``error`` (the Catch's
    RecordBatchFailure) every object of the batch gets an error line instead."""
    _correlate(event)
    if event.get("error"):
        return batch_prediction_worker.record_batch_failure(event)
    return batch_prediction_worker.predict_batch(event, lambda: context.get_remaining_time_in_millis() / 1000)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def finish(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """RecordBatchPrediction / RecordBatchPredictionFailure: manifest.json and the job's final status."""
    _correlate(event)
    return batch_predictions.finish(event)
