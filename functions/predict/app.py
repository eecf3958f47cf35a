"""POST /v1/models/{id}/predict behind an API Gateway REST API (Lambda proxy integration).

Only translation lives here: ``sightline.predict_request.predict_event`` reads and answers the event; its answer
or error becomes the proxy response. Raw image bodies arrive base64-encoded when the API lists ``image/*``
among its binary media types.
"""
from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from sightline.errors import SightlineError
from sightline.predict_request import predict_event

logger = Logger()


def _response(status: int, document: dict) -> dict:
    return {"statusCode": status, "headers": {"Content-Type": "application/json"}, "body": json.dumps(document)}


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context: LambdaContext) -> dict[str, Any]:
    logger.append_keys(model_id=(event.get("pathParameters") or {}).get("id") or "")
    try:
        answer = predict_event(event)
    except SightlineError as error:
        if error.status >= 500:
            logger.exception("predict failed")
        else:
            logger.info("predict refused", extra={"status": error.status, "code": error.code})
        return _response(error.status, error.to_dict())
    except Exception:  # noqa: BLE001 - the caller gets a generic 500, the log gets the stack trace
        logger.exception("predict failed")
        return _response(500, {"error": {"code": "internal_error", "message": "internal error"}})
    logger.info("predicted", extra={"version": answer["version"], "predictions": len(answer["predictions"])})
    return _response(200, answer)
