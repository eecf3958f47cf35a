"""POST /v1/models/{id}/predict behind an API Gateway REST API (Lambda proxy integration).

Only translation lives here: the event becomes ``sightline.inference.predict_request``'s arguments, its answer
or error becomes the proxy response. Raw image bodies arrive base64-encoded when the API lists ``image/*``
among its binary media types.
"""
from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from sightline.errors import BadRequest, SightlineError
from sightline.inference import predict_request

logger = Logger()


def _response(status: int, document: dict) -> dict:
    return {"statusCode": status, "headers": {"Content-Type": "application/json"}, "body": json.dumps(document)}


def _body(event: dict) -> bytes:
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest("request body is not valid base64", code="invalid_body") from None
    return body.encode("utf-8") if isinstance(body, str) else bytes(body)


def _content_type(event: dict) -> str | None:
    # HTTP header names are case-insensitive; API Gateway passes them as the client wrote them.
    for name, value in (event.get("headers") or {}).items():
        if name.lower() == "content-type":
            return value
    for name, values in (event.get("multiValueHeaders") or {}).items():
        if name.lower() == "content-type" and values:
            return values[0]
    return None


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context: LambdaContext) -> dict[str, Any]:
    model_id = (event.get("pathParameters") or {}).get("id") or ""
    logger.append_keys(model_id=model_id)
    try:
        answer = predict_request(
            model_id, _body(event), _content_type(event), event.get("queryStringParameters") or {}
        )
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
