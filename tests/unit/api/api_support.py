"""Shared set-up of the API tests: a fake dataset store, the training state machine in moto, a caller."""
from __future__ import annotations

import base64
import copy
import json
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import boto3
import pytest


from support import TEST_ENV, create_training_state_machine, load_event  # noqa: E402,F401


def dataset(name: str, *, status: str = "ready", tasks: tuple[str, ...] = ("classification",), **extra: Any) -> dict:
    return {
        "name": name,
        "status": status,
        "classes": {"cat": 3, "dog": 4},
        "images": 7,
        "annotations": 0,
        "tasks": list(tasks),
        "issues": [],
        "issue_count": 0,
        "created_at": "2026-11-22T05:00:00.000000Z",
        "updated_at": "2026-11-22T05:00:00.000000Z",
        **extra,
    }


@dataclass
class FakeDatasetStore:
    """Stands in for ``sightline.datasets.store`` (another part of the package) with its two readers."""

    datasets: dict[str, dict] = field(default_factory=dict)

    def add(self, item: dict) -> None:
        self.datasets[item["name"]] = item

    def get_dataset(self, name: str) -> dict | None:
        return copy.deepcopy(self.datasets.get(name))

    def list_datasets(self) -> list[dict]:
        return [copy.deepcopy(self.datasets[name]) for name in sorted(self.datasets)]


class LambdaContext:
    function_name = "sightline-test-api"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:sightline-test-api"
    aws_request_id = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


@pytest.fixture
def api_env(aws_resources, monkeypatch):
    """moto resources, the state machine, an empty fake dataset store wired into ``sightline.api``."""
    from sightline import api

    store = FakeDatasetStore()
    monkeypatch.setattr(api, "dataset_store", store)
    state_machine_arn = create_training_state_machine()
    assert state_machine_arn == TEST_ENV["TRAINING_STATE_MACHINE_ARN"]
    return SimpleNamespace(
        resources=aws_resources, store=store, sfn=boto3.client("stepfunctions"), state_machine_arn=state_machine_arn
    )


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
    return table.scan()["Items"]
