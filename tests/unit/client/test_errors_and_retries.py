"""Typed errors from the API's error body, and which requests are retried, how long apart."""
from __future__ import annotations

import random
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone

import pytest

from fake_api import API_KEY, Reply, error
from support import free_port
from sightline_client import (
    Conflict,
    ConfigurationError,
    ConnectionFailed,
    Forbidden,
    IdempotencyKeyReused,
    NotFound,
    PayloadTooLarge,
    RetryPolicy,
    ServerError,
    ServiceUnavailable,
    SightlineClient,
    SightlineError,
    Throttled,
    UnsupportedMediaType,
    ValidationError,
)


@pytest.mark.parametrize(("status", "code", "expected"), [
    (400, "invalid_params", ValidationError),
    (403, "scope_forbidden", Forbidden),
    (404, "model_not_found", NotFound),
    (409, "model_not_ready", Conflict),
    (413, "payload_too_large", PayloadTooLarge),
    (415, "unsupported_media_type", UnsupportedMediaType),
    (422, "idempotency_key_reused", IdempotencyKeyReused),
    (429, "quota_exceeded", Throttled),
    (500, "internal_error", ServerError),
    (503, "training_unavailable", ServiceUnavailable),
])
def test_each_error_status_raises_its_type_with_the_api_code_and_message(fake, make_client, status, code, expected):
    fake.on("GET", "/v1/models/mdl-1", error(status, code, f"message for {code}", reference="req-123"))
    client = make_client(retry=RetryPolicy(attempts=1))
    with pytest.raises(expected) as raised:
        client.get_model("mdl-1")
    assert (raised.value.status, raised.value.code, raised.value.message) == (status, code, f"message for {code}")
    assert raised.value.reference == "req-123"
    assert isinstance(raised.value, SightlineError)


def test_a_body_that_is_not_the_api_error_still_gives_a_typed_error(fake, make_client):
    fake.on("GET", "/v1/models", Reply(502, b"<html>Bad Gateway</html>", {"Content-Type": "text/html"}))
    fake.on("GET", "/v1/templates", Reply(403, {"message": "Forbidden"}))
    client = make_client(retry=RetryPolicy(attempts=1))
    with pytest.raises(ServerError) as raised:
        client.list_models()
    assert raised.value.code == "internal_error" and "Bad Gateway" in raised.value.message
    with pytest.raises(Forbidden) as refused:
        client.list_templates()
    assert refused.value.message == "Forbidden" and refused.value.code == "forbidden"


def test_the_key_is_sent_and_missing_keys_are_a_configuration_error(fake, client, monkeypatch):
    fake.on("GET", "/v1/health", {"status": "ok"})
    fake.on("GET", "/v1/models", {"models": []})
    assert client.list_models() == [] and fake.sent("GET", "/v1/models")[0].headers["x-api-key"] == API_KEY
    keyless = SightlineClient(fake.url, None)
    assert keyless.health() == {"status": "ok"}
    assert "x-api-key" not in fake.sent("GET", "/v1/health")[0].headers
    with pytest.raises(ConfigurationError, match="no API key"):
        keyless.list_models()


def test_503_is_retried_with_growing_jittered_waits_then_answers(fake, client, sleeps):
    fake.on("GET", "/v1/models", [error(503, "unavailable"), error(502, "bad_gateway"), error(500, "internal_error"),
                                  {"models": [{"model_id": "mdl-1"}]}])
    assert client.list_models() == [{"model_id": "mdl-1"}]
    assert len(fake.sent("GET", "/v1/models")) == 4
    # base 1 s: the n-th wait is between half of and the whole 2**(n-1) s
    assert [0.5 <= sleeps[0] <= 1, 1 <= sleeps[1] <= 2, 2 <= sleeps[2] <= 4] == [True] * 3


def test_the_backoff_is_capped_and_random_within_its_step():
    policy = RetryPolicy(attempts=10, base_delay=1.0, max_delay=8.0)
    rng = random.Random(1)
    waits = [policy.backoff(n, rng) for n in range(1, 8)]
    assert all(4 <= wait <= 8 for wait in waits[3:])
    assert len({round(w, 6) for w in waits[3:]}) > 1  # jitter: not all the same


def test_429_waits_as_long_as_retry_after_says_seconds_or_date(fake, client, sleeps):
    when = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    fake.on("GET", "/v1/templates", [Reply(429, {"error": {"code": "throttled", "message": "slow down"}},
                                           {"Retry-After": "7"}),
                                     Reply(429, {"error": {"code": "throttled", "message": "slow down"}},
                                           {"Retry-After": when}),
                                     {"templates": []}])
    assert client.list_templates() == []
    assert sleeps[0] == 7 and 25 < sleeps[1] <= 30


def test_a_retry_after_beyond_the_policy_raises_throttled_at_once(fake, make_client, sleeps):
    fake.on("GET", "/v1/templates", Reply(429, {"error": {"code": "throttled", "message": "slow down"}},
                                          {"Retry-After": "3600"}))
    client = make_client(retry=RetryPolicy(attempts=5, max_retry_after=60))
    with pytest.raises(Throttled) as raised:
        client.list_templates()
    assert raised.value.retry_after == 3600 and sleeps == [] and len(fake.sent()) == 1


def test_quota_exceeded_and_400_are_not_retried(fake, client, sleeps):
    fake.on("GET", "/v1/templates", error(429, "quota_exceeded", "daily quota used up"))
    fake.on("POST", "/v1/models", error(400, "invalid_params", "params.epochs must be between 1 and 500, got 0"))
    with pytest.raises(Throttled, match="daily quota"):
        client.list_templates()
    with pytest.raises(ValidationError, match="epochs"):
        client.create_model("m", "classification", ["d"], params={"epochs": 0})
    assert sleeps == [] and len(fake.sent()) == 2


def test_retries_give_up_after_the_policy_s_attempts(fake, client, sleeps):
    fake.on("GET", "/v1/models/mdl-1", error(503, "unavailable", "try later"))
    with pytest.raises(ServiceUnavailable, match="try later"):
        client.get_model("mdl-1")
    assert len(fake.sent()) == 4 and len(sleeps) == 3


def test_a_post_is_retried_with_one_idempotency_key_and_a_predict_carries_none(fake, client):
    fake.on("POST", "/v1/models", [error(503, "training_unavailable"),
                                   error(409, "request_in_progress", "still answering the first"),
                                   Reply(202, {"model_id": "mdl-1", "version": 1, "status": "training"})])
    assert client.create_model("m", "classification", ["pets"])["model_id"] == "mdl-1"
    keys = {r.headers["Idempotency-Key"] for r in fake.sent("POST", "/v1/models")}
    assert len(fake.sent("POST", "/v1/models")) == 3 and len(keys) == 1 and len(next(iter(keys))) == 32
    client.create_model("m", "classification", ["pets"], idempotency_key="mine-1")
    assert fake.sent("POST", "/v1/models")[-1].headers["Idempotency-Key"] == "mine-1"

    fake.on("POST", "/v1/models/mdl-1/predict", [error(503, "unavailable"), {"model_id": "mdl-1", "predictions": []}])
    assert client.predict("mdl-1", b"\x89PNG\r\n\x1a\n...")["predictions"] == []
    predicts = fake.sent("POST", "/v1/models/mdl-1/predict")
    assert len(predicts) == 2 and all("Idempotency-Key" not in r.headers for r in predicts)


def test_a_conflict_that_is_not_an_idempotent_retry_is_raised(fake, client, sleeps):
    fake.on("POST", "/v1/models/mdl-1/versions", error(409, "version_in_progress", "version 2 is training"))
    with pytest.raises(Conflict) as raised:
        client.create_version("mdl-1")
    assert raised.value.code == "version_in_progress" and sleeps == []


def test_no_answer_at_all_is_retried_then_a_connection_error(make_client, sleeps):
    client = SightlineClient(f"http://127.0.0.1:{free_port()}", API_KEY, sleep=sleeps,
                             retry=RetryPolicy(attempts=3, base_delay=0.1))
    with pytest.raises(ConnectionFailed) as raised:
        client.list_models()
    assert len(sleeps) == 2 and "after 3 tries" in raised.value.message
    assert "Connection refused" in raised.value.message and "sightline local up" in raised.value.message


def test_path_segments_are_escaped_and_bad_versions_refused_before_any_request(fake, client):
    fake.on("GET", "/v1/datasets/a%20b", {"name": "a b"})
    assert client.get_dataset("a b") == {"name": "a b"}
    for bad in (0, -1, "2", True):
        with pytest.raises(ValidationError, match="positive integer"):
            client.get_version("mdl-1", bad)  # type: ignore[arg-type]
    assert len(fake.sent()) == 1
