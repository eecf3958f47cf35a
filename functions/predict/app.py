"""POST /v1/models/{id}/predict and POST /v1/predict (several models) behind an API Gateway REST API (Lambda
proxy integration).

Only translation lives here: ``sightline.predict_request.predict_event`` reads and answers the event; its answer
or error becomes the proxy response. Raw image, zip and multipart bodies arrive base64-encoded: the API lists
their media types among its binary media types. No X-Ray SDK here (sightline.observability says why): Lambda's active tracing
traces the invocations. Each invocation emits EMF metrics: ``Predictions`` and ``PredictLatency`` for an
answer, ``PredictClientErrors`` or ``PredictServerErrors`` otherwise.
"""
from __future__ import annotations

import json
import time
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from sightline.errors import SightlineError
from sightline.observability import count, metrics
from sightline.predict_request import predict_event
from sightline.public_errors import referenced

logger = Logger()


def _response(status: int, document: dict) -> dict:
    return {"statusCode": status, "headers": {"Content-Type": "application/json"}, "body": json.dumps(document)}


# The correlation id is API Gateway's request id: every log line of the request carries it.
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@metrics.log_metrics
def handler(event: dict, context: LambdaContext) -> dict[str, Any]:
    model_id = (event.get("pathParameters") or {}).get("id") or "(several)"
    logger.append_keys(model_id=model_id)
    metrics.add_metadata(key="model_id", value=model_id)  # metadata, not a dimension: one metric for all models
    started = time.perf_counter()
    try:
        answer = predict_event(event)
    except SightlineError as error:
        if error.status >= 500:
            # The message may quote AWS (ARNs): it stays in the log, the caller gets the request id to quote.
            logger.exception("predict failed")
            count("PredictServerErrors")
            return _response(error.status, referenced(error.code, _request_id(event)))
        logger.info("predict refused", extra={"status": error.status, "code": error.code})
        count("PredictClientErrors")
        return _response(error.status, error.to_dict())
    except Exception:  # noqa: BLE001 - the caller gets a generic 500, the log gets the stack trace
        logger.exception("predict failed")
        count("PredictServerErrors")
        return _response(500, referenced("internal_error", _request_id(event)))
    count("Predictions")
    metrics.add_metric(name="PredictLatency", unit=MetricUnit.Milliseconds,
                       value=round((time.perf_counter() - started) * 1000, 3))
    logger.info("predicted", extra=_summary(answer))
    return _response(200, answer)


def _request_id(event: dict) -> str:
    return str((event.get("requestContext") or {}).get("requestId") or "")


def _summary(answer: dict) -> dict:
    """What the log says of an answer: each model's version and how many images and predictions it gave."""
    summary = {}
    for result in answer.get("results", [answer]):
        images = result.get("images", [result])
        summary[result["model_id"]] = {
            "version": result.get("version"),
            "images": len(images),
            "predictions": sum(len(image.get("predictions", [])) for image in images),
            "errors": sum(1 for image in images if "error" in image) + int("error" in result),
        }
    return {"models": summary}
