"""Lambda handler of the REST API: API Gateway proxy event in, proxy response out (routes in ``sightline.api``)."""
from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from sightline import idempotency
from sightline.api import app

logger = Logger()


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if idempotency.applies(event):  # a POST with an Idempotency-Key: answered once per key
        return idempotency.resolve(event, context, app.resolve)
    return app.resolve(event, context)
