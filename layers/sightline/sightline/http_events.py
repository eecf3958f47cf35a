"""What every HTTP route reads from an API Gateway proxy event: its body, its headers and JSON in it.

Malformed input of any kind is the caller's mistake: a ``BadRequest`` (400) with the error shape, never a 500.
"""
from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from sightline.errors import BadRequest


def event_body(event: dict[str, Any]) -> bytes:
    """The request body as bytes; API Gateway base64-encodes bodies of its binary media types."""
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest("request body is not valid base64", code="invalid_body") from None
    return body.encode("utf-8") if isinstance(body, str) else bytes(body)


def event_header(event: dict[str, Any], name: str) -> str | None:
    """A header's value; names are case-insensitive and API Gateway passes them as the client wrote them."""
    wanted = name.lower()
    for key, value in (event.get("headers") or {}).items():
        if key.lower() == wanted:
            return value
    for key, values in (event.get("multiValueHeaders") or {}).items():
        if key.lower() == wanted and values:
            return values[0]
    return None


def json_document(raw: bytes | str, *, what: str = "request body") -> Any:
    """``raw`` parsed as JSON, or a 400 that says what is wrong with it."""
    try:
        return json.loads(raw)
    except RecursionError:
        # CPython's parser refuses nesting deeper than its recursion limit by raising this, not ValueError.
        raise BadRequest(f"{what} is not acceptable JSON: it is nested too deeply", code="invalid_json") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise BadRequest(f"{what} is not valid JSON: {error}", code="invalid_json") from None
