"""Scoped keys end to end through the local stack: the authorizer function, its cache, the MOCK health route
and the throttles of the API front, with keys made by ``sightline keys``."""
from __future__ import annotations

import json
import random
import time

import pytest
from PIL import Image

from sightline_client import Forbidden, NotFound, SightlineError, Throttled, ValidationError
from sightline_local import synthetic
from sightline_cli.app import main as cli
from support import StackClient, get_without_key, running_stack

pytestmark = pytest.mark.e2e

CACHE_SECONDS = 2  # AuthorizerCacheSeconds of this stack: how long a revoked key may still be honoured
UNKNOWN_MODEL = "mdl-0123456789ab"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("state"), "e2e-access-key-0123456789",
                       parameters={"AuthorizerCacheSeconds": str(CACHE_SECONDS)}) as local:
        yield local


@pytest.fixture(scope="module")
def admin(stack):
    return StackClient(stack.config.api_url, stack.api_key)


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
    assert admin.health() == {"status": "ok"}  # sent without the key
    assert "x-api-key" not in admin.last.request.headers and admin.last.status_code == 200
    assert invocations == []


def test_a_predict_only_key_predicts_and_nothing_else_until_it_is_revoked(stack, admin, capsys):
    created = keys_cli(stack, capsys, "create", "--name", "camera", "--scope", "predict")
    assert created["scopes"] == ["predict"] and created["key"].endswith(created["last4"])
    camera = StackClient(stack.config.api_url, created["key"])

    # Past the authorizer: the model does not exist, which only the predict function can say.
    with pytest.raises(NotFound) as unknown:
        camera.predict(UNKNOWN_MODEL, image())
    assert (unknown.value.status, unknown.value.code) == (404, "model_not_found")
    for refused in (lambda: camera.create_model("x", "classification", ["x"]), camera.list_datasets,
                    camera.list_keys):
        with pytest.raises(Forbidden) as caught:
            refused()
        assert (caught.value.status, caught.value.code) == (403, "scope_forbidden")

    listed = {key["key_id"]: key for key in keys_cli(stack, capsys, "list")["keys"]}
    assert listed[created["key_id"]]["revoked_at"] is None
    assert keys_cli(stack, capsys, "revoke", created["key_id"])["revoked_at"]
    revoked_at = time.monotonic()
    # The authorizer's cached answer may still let it through for CACHE_SECONDS, API Gateway's own key cache a
    # few seconds more; after that the key is refused for good.
    deadline = revoked_at + CACHE_SECONDS + 10
    while True:
        try:
            camera.predict(UNKNOWN_MODEL, image())
        except NotFound:  # still let through to the predict function
            pass
        except Forbidden:
            break
        assert time.monotonic() < deadline, "the revoked key is still honoured"
        time.sleep(0.5)
    with pytest.raises(Forbidden) as denied:
        camera.predict(UNKNOWN_MODEL, image())
    assert (denied.value.status, denied.value.code) == (403, "forbidden")
    listed = {key["key_id"]: key for key in keys_cli(stack, capsys, "list")["keys"]}
    assert listed[created["key_id"]]["revoked_at"]


def test_the_stacks_own_key_keeps_every_scope_and_unknown_keys_are_forbidden(stack, admin):
    assert admin.list_templates() and admin.last.status_code == 200
    admin.list_keys()
    assert admin.last.status_code == 200
    keyless = get_without_key(stack.config.api_url, "/v1/templates")
    assert keyless.status_code == 403 and keyless.json()["error"]["code"] == "forbidden"
    for key in ("not-a-key-0123456789", "sl_0123456789abcdef_" + "A" * 43):
        with pytest.raises(Forbidden) as caught:
            StackClient(stack.config.api_url, key).list_templates()
        assert (caught.value.status, caught.value.code) == (403, "forbidden")


def test_creating_keys_is_throttled_per_method_with_api_gateways_answer(admin):
    # POST /v1/keys: 1 a second, bursts of 5 (template.yaml MethodSettings); refused bodies count too.
    # The client retries nothing here (StackClient), so each refusal is seen as it was answered.
    answers = []
    for _ in range(8):
        with pytest.raises(SightlineError) as refused:
            admin.create_key("", ["read"])
        answers.append(refused.value)
    statuses = [answer.status for answer in answers]
    assert set(statuses) == {400, 429} and statuses[0] == 400, statuses
    assert all(isinstance(answer, ValidationError) for answer in answers if answer.status == 400)
    throttled = next(answer for answer in answers if answer.status == 429)
    assert isinstance(throttled, Throttled) and throttled.code == "throttled"
