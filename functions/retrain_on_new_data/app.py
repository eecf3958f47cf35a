"""RetrainOnNewData: a DatasetUpdated event on the Sightline bus -> new versions of the models that opted in; a
ModelVersionFinished event -> the version queued behind it; debounce messages (SQS) -> the retraining they waited
for (logic in ``sightline.retraining``)."""
from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from sightline import retraining
from sightline.observability import count, metrics, tracer

logger = Logger()
processor = BatchProcessor(event_type=EventType.SQS)


def _debounced(record: SQSRecord) -> None:
    outcome = retraining.retrain_after_debounce(json.loads(record.body))
    if outcome.get("outcome") == retraining.STARTED:
        count("RetrainingsStarted")


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if "Records" in event:  # debounce messages whose wait is over
        return process_partial_response(event=event, record_handler=_debounced, processor=processor, context=context)
    if event.get("detail-type") == "ModelVersionFinished":  # start the version queued behind the finished one
        started = retraining.start_queued_version(str((event.get("detail") or {}).get("model_id", "")))
        return {"started": None if started is None else started["version"]}
    result = retraining.retrain_for_dataset(event)
    count("RetrainingsStarted", sum(1 for model in result["models"] if model["outcome"] == retraining.STARTED))
    return result
