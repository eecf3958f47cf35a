"""Lambda handler of the REST API: API Gateway proxy event in, proxy response out (routes in ``sightline.api``)."""
from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from sightline import idempotency
from sightline.api import app
from sightline.observability import count, metrics, tracer

logger = Logger()


# The correlation id is API Gateway's request id: every log line of the request carries it.
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # Which key asked (the authorizer's context; absent under IAM authorization): every line says who did what.
    authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
    if authorizer.get("key_id"):
        logger.append_keys(caller_key_id=authorizer["key_id"])
    if idempotency.applies(event):  # a POST with an Idempotency-Key: answered once per key
        response = idempotency.resolve(event, context, app.resolve)
    else:
        response = app.resolve(event, context)
    status = int(response.get("statusCode") or 0)
    count("ApiRequests")
    if status >= 500:
        count("ApiServerErrors")
    elif status >= 400:
        count("ApiClientErrors")
    return response
