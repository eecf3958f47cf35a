"""Register function: batches of queued S3 notifications (objects created or removed under datasets/) ->
registered dataset sources, each touched dataset recomputed once per batch.

Only translation lives here: ``sightline.datasets.delivery`` registers the batch's messages, and Powertools'
batch processor reports per message; a message whose object hit throttling or a service error is reported in
``batchItemFailures`` so SQS delivers just that one again (and, after the queue's maxReceiveCount, to its
dead-letter queue). Bad data never fails a message: it becomes issues on the dataset.
"""
from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from sightline.datasets.delivery import RegistrationBatch
from sightline.observability import count, metrics, tracer

logger = Logger()
processor = BatchProcessor(event_type=EventType.SQS)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    batch = RegistrationBatch()
    # Registered all at once first (the work is waiting on S3 and DynamoDB); then the processor asks per message.
    batch.register_messages([(record["messageId"], record["body"]) for record in event.get("Records") or []])

    def record_handler(record: SQSRecord) -> None:
        batch.raise_failure(record.message_id)

    response = process_partial_response(event=event, record_handler=record_handler, processor=processor,
                                        context=context)
    summaries = batch.recompute()
    count("DatasetObjectsReceived", len(event.get("Records") or []))
    count("DatasetObjectsRetried", len(response.get("batchItemFailures", [])))
    count("DatasetsRecomputed", len(summaries))
    logger.info("batch registered", extra={"messages": len(event.get("Records") or []),
                                           "failures": len(response.get("batchItemFailures", [])),
                                           "datasets": {name: s["status"] for name, s in summaries.items()}})
    return response
