"""Scoped keys end to end through the local stack: the authorizer function, its cache, the MOCK health route
and the throttles of the API front, with keys made by ``sightline keys``."""
from __future__ import annotations

import json
import random
import time

import pytest
from PIL import Image

from sightline_local import synthetic
from sightline_cli.app import main as cli
from sightline_local.client import SightlineClient
from support import running_stack

pytestmark = pytest.mark.e2e

CACHE_SECONDS = 2  # AuthorizerCacheSeconds of this stack: how long a revoked key may still be honoured


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("state"), "e2e-access-key-0123456789",
                       parameters={"AuthorizerCacheSeconds": str(CACHE_SECONDS)}) as local:
        yield local


@pytest.fixture(scope="module")
def admin(stack):
    return SightlineClient(stack.config.api_url, stack.api_key, timeout=120)


@pytest.fixture
def invocations(stack, monkeypatch):
    """The functions the stack invokes during a test, by name."""
    runtime = stack._runtime
    called: list[str] = []
    original = runtime.invoke

    def recording(name_or_arn, event):
        called.append(name_or_arn.rsplit(":", 1)[-1])
        return original(name_or_arn, event)

    monkeypatch.setattr(runtime, "invoke", recording)
    return called


def keys_cli(stack, capsys, *args: str) -> dict:
    """``sightline keys ... --json``, as a user would run it against this stack; its JSON answer."""
    assert cli(["keys", "--api-url", stack.config.api_url, "--api-key", stack.api_key, *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def image() -> bytes:
    return synthetic.encode(Image.new("RGB", (32, 32), (random.randrange(256), 0, 0)))


def test_health_is_answered_without_a_key_or_any_function(admin, invocations):
    answer = admin.get("/v1/health", api_key=None)
    assert (answer.status, answer.json()) == (200, {"status": "ok"})
    assert invocations == []


def test_a_predict_only_key_predicts_and_nothing_else_until_it_is_revoked(stack, admin, capsys):
    created = keys_cli(stack, capsys, "create", "--name", "camera", "--scope", "predict")
    assert created["scopes"] == ["predict"] and created["key"].endswith(created["last4"])
    camera = SightlineClient(stack.config.api_url, created["key"], timeout=120)

    # Past the authorizer: the model does not exist, which only the predict function can say.
    unknown = camera.post("/v1/models/mdl-0123456789ab/predict", image(), content_type="image/png")
    assert unknown.status == 404 and unknown.json()["error"]["code"] == "model_not_found"
    for refused in (camera.post("/v1/models", {"name": "x", "task": "classification", "datasets": ["x"]}),
                    camera.get("/v1/datasets"), camera.get("/v1/keys")):
        assert refused.status == 403 and refused.json()["error"]["code"] == "scope_forbidden"

    listed = {key["key_id"]: key for key in keys_cli(stack, capsys, "list")["keys"]}
    assert listed[created["key_id"]]["revoked_at"] is None
    assert keys_cli(stack, capsys, "revoke", created["key_id"])["revoked_at"]
    revoked_at = time.monotonic()
    # The authorizer's cached answer may still let it through for CACHE_SECONDS, API Gateway's own key cache a
    # few seconds more; after that the key is refused for good.
    deadline = revoked_at + CACHE_SECONDS + 10
    while camera.post("/v1/models/mdl-0123456789ab/predict", image(), content_type="image/png").status != 403:
        assert time.monotonic() < deadline, "the revoked key is still honoured"
        time.sleep(0.5)
    denied = camera.post("/v1/models/mdl-0123456789ab/predict", image(), content_type="image/png")
    assert denied.status == 403 and denied.json()["error"]["code"] == "forbidden"
    listed = {key["key_id"]: key for key in keys_cli(stack, capsys, "list")["keys"]}
    assert listed[created["key_id"]]["revoked_at"]


def test_the_stacks_own_key_keeps_every_scope_and_unknown_keys_are_forbidden(admin):
    assert admin.get("/v1/templates").status == 200
    assert admin.get("/v1/keys").status == 200
    for key in (None, "not-a-key-0123456789", "sl_0123456789abcdef_" + "A" * 43):
        answer = admin.get("/v1/templates", api_key=key)
        assert answer.status == 403 and answer.json()["error"]["code"] == "forbidden"


def test_creating_keys_is_throttled_per_method_with_api_gateways_answer(admin):
    # POST /v1/keys: 1 a second, bursts of 5 (template.yaml MethodSettings); refused bodies count too.
    answers = [admin.post("/v1/keys", {"name": "", "scopes": ["read"]}) for _ in range(8)]
    statuses = [answer.status for answer in answers]
    assert set(statuses) == {400, 429} and statuses[0] == 400, statuses
    throttled = next(answer for answer in answers if answer.status == 429)
    assert throttled.json()["error"]["code"] == "throttled"
