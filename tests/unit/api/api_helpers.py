"""What the API tests share: a caller that sends REST proxy events through the resolver, and table reads.
The fixtures (moto resources, the state machine, registered datasets) are in this folder's ``conftest.py``."""
from __future__ import annotations

import base64
import json
from types import SimpleNamespace
from typing import Any

from support import LambdaContext, load_event


def request(
    fixture: str,
    *,
    method: str | None = None,
    path: str | None = None,
    body: Any = None,
    raw_body: str | None = None,
    base64_body: bool = False,
    query: dict[str, str] | None = None,
) -> SimpleNamespace:
    """Send a REST proxy event (a fixture, optionally changed) through the resolver; the answer, parsed."""
    from sightline.api import app

    event = load_event(fixture)
    if method is not None:
        event["httpMethod"] = event["requestContext"]["httpMethod"] = method
    if path is not None:
        event["path"] = path
    if query is not None:
        event["queryStringParameters"] = query
        event["multiValueQueryStringParameters"] = {name: [value] for name, value in query.items()}
    if body is not None:
        raw_body = json.dumps(body)
    if raw_body is not None:
        event["body"] = base64.b64encode(raw_body.encode()).decode() if base64_body else raw_body
        event["isBase64Encoded"] = base64_body
    response = app.resolve(event, LambdaContext())
    return parsed(response)


def parsed(response: dict) -> SimpleNamespace:
    headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    for name, values in (response.get("multiValueHeaders") or {}).items():
        headers.setdefault(name.lower(), ", ".join(values))
    return SimpleNamespace(
        status=response["statusCode"], headers=headers, json=json.loads(response["body"]), raw=response
    )


def model_items(table) -> list[dict]:
    """Every item the model registry wrote (models and their versions; not the datasets')."""
    from sightline import keys

    return [item for item in table.scan()["Items"] if item["pk"].startswith(keys.model_pk(""))]
