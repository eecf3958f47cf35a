"""Idempotency-Key: a retried POST gets the first answer, never a second model or training run."""
from __future__ import annotations

import json

import pytest

from sightline import events, model_registry
from support import LambdaContext, load_event, load_function

api_function = load_function("api")


def post_model(key: str | None, body: dict | None = None) -> dict:
    event = load_event("apigw_post_models.json")
    if key is not None:
        event["headers"]["Idempotency-Key"] = key
        event["multiValueHeaders"]["Idempotency-Key"] = [key]
    if body is not None:
        event["body"] = json.dumps(body)
    return api_function.handler(event, LambdaContext())


@pytest.fixture
def quiet(api_datasets, monkeypatch):
    monkeypatch.setattr(events, "publish", lambda detail_type, detail: None)


def test_a_retried_create_answers_the_same_and_trains_once(quiet):
    first = post_model("create-pets-1")
    again = post_model("create-pets-1")

    assert first["statusCode"] == again["statusCode"] == 202
    assert json.loads(again["body"]) == json.loads(first["body"])
    assert len(model_registry.list_models()) == 1
    assert post_model("create-pets-2")["statusCode"] == 202  # another key is another request
    assert len(model_registry.list_models()) == 2


def test_the_same_key_for_another_body_is_refused(quiet):
    assert post_model("k-1")["statusCode"] == 202
    reused = post_model("k-1", {"name": "other", "task": "classification", "datasets": ["pets"]})
    assert reused["statusCode"] == 422
    assert json.loads(reused["body"])["error"]["code"] == "idempotency_key_reused"
    assert len(model_registry.list_models()) == 1


@pytest.mark.parametrize("key", ["", "has space", "x" * 129, "naïve"])
def test_an_unusable_key_is_a_400(quiet, key):
    answer = post_model(key)
    assert (answer["statusCode"], json.loads(answer["body"])["error"]["code"]) == (400, "invalid_idempotency_key")
    assert model_registry.list_models() == []


def test_without_a_key_every_post_is_its_own_request(quiet):
    post_model(None)
    post_model(None)
    assert len(model_registry.list_models()) == 2
