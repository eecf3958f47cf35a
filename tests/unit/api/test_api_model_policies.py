"""A model's retraining policy and promotion gate: set at creation, shown by GET, changed by PATCH, and every
wrong field a 400 that names it."""
from __future__ import annotations

import pytest

from api_helpers import request

MODEL = {"name": "pets", "task": "classification", "datasets": ["pets"], "params": {"epochs": 1}}


def create(api_env, **fields) -> str:
    api_env.datasets.classification("pets")
    answer = request("apigw_post_models.json", body={**MODEL, **fields})
    assert answer.status == 202, answer.json
    return answer.json["model_id"]


def get(model_id: str) -> dict:
    answer = request("apigw_get_model.json", path=f"/v1/models/{model_id}")
    assert answer.status == 200, answer.json
    return answer.json


def patch(model_id: str, body) -> object:
    return request("apigw_get_model.json", method="PATCH", path=f"/v1/models/{model_id}", body=body)


def test_a_model_without_policies_reads_the_defaults(api_env):
    model = get(create(api_env))
    assert model["retraining"] == {"auto": False, "min_new_images": 0, "debounce_seconds": 0,
                                   "cooldown_seconds": 0}
    assert model["promotion"] == {"gate": "metric_not_worse", "metric": None, "min_improvement": 0.0}
    assert model["retrain_on_new_data"] is False and model["retraining_scheduled"] is None


def test_policies_given_at_creation_are_shown(api_env):
    model = get(create(api_env, retraining={"auto": True, "min_new_images": 20, "debounce_seconds": 300},
                       promotion={"gate": "always"}))
    assert model["retraining"] == {"auto": True, "min_new_images": 20, "debounce_seconds": 300,
                                   "cooldown_seconds": 0}
    assert model["retrain_on_new_data"] is True
    assert model["promotion"] == {"gate": "always", "metric": None, "min_improvement": 0.0}


def test_the_old_flag_still_sets_retraining_on_new_data(api_env):
    model = get(create(api_env, retrain_on_new_data=True))
    assert model["retraining"]["auto"] is True and model["retrain_on_new_data"] is True


def test_patch_changes_only_the_fields_given(api_env):
    model_id = create(api_env, retraining={"min_new_images": 5})
    answer = patch(model_id, {"retraining": {"auto": True, "debounce_seconds": 60},
                              "promotion": {"metric": "f1_macro", "min_improvement": -0.02}})
    assert answer.status == 200, answer.json
    assert answer.json["retraining"] == {"auto": True, "min_new_images": 5, "debounce_seconds": 60,
                                         "cooldown_seconds": 0}
    assert answer.json["promotion"] == {"gate": "metric_not_worse", "metric": "f1_macro", "min_improvement": -0.02}
    assert get(model_id)["retrain_on_new_data"] is True
    assert patch(model_id, {"retraining": {"auto": False}}).json["retrain_on_new_data"] is False


@pytest.mark.parametrize(("body", "code", "names"), [
    ({"retraining": {"min_new_images": -1}}, "invalid_retraining", "retraining.min_new_images"),
    ({"retraining": {"min_new_images": 2.5}}, "invalid_retraining", "retraining.min_new_images"),
    ({"retraining": {"debounce_seconds": 86401}}, "invalid_retraining", "retraining.debounce_seconds"),
    ({"retraining": {"cooldown_seconds": True}}, "invalid_retraining", "retraining.cooldown_seconds"),
    ({"retraining": {"auto": "yes"}}, "invalid_retraining", "retraining.auto"),
    ({"retraining": {"on_new_data": True}}, "invalid_retraining", "retraining.on_new_data"),
    ({"retraining": []}, "invalid_retraining", "retraining"),
    ({"promotion": {"gate": "sometimes"}}, "invalid_promotion", "promotion.gate"),
    ({"promotion": {"min_improvement": 2}}, "invalid_promotion", "promotion.min_improvement"),
    ({"promotion": {"min_improvement": "0.1"}}, "invalid_promotion", "promotion.min_improvement"),
    ({"promotion": {"metric": "a b"}}, "invalid_promotion", "promotion.metric"),
    ({"name": "renamed"}, "unknown_field", "name"),
    ({}, "invalid_json", "retraining"),
])
def test_a_wrong_field_is_a_400_naming_it_and_changes_nothing(api_env, body, code, names):
    model_id = create(api_env)
    before = get(model_id)
    answer = patch(model_id, body)
    assert answer.status == 400, answer.json
    assert answer.json["error"]["code"] == code and names in answer.json["error"]["message"]
    after = get(model_id)
    assert (after["retraining"], after["promotion"]) == (before["retraining"], before["promotion"])


def test_creation_refuses_a_wrong_policy_and_a_contradiction(api_env):
    api_env.datasets.classification("pets")
    wrong = request("apigw_post_models.json", body={**MODEL, "promotion": {"gate": "maybe"}})
    assert wrong.status == 400 and "promotion.gate" in wrong.json["error"]["message"]
    both = request("apigw_post_models.json",
                   body={**MODEL, "retrain_on_new_data": True, "retraining": {"auto": False}})
    assert both.status == 400 and both.json["error"]["code"] == "invalid_retraining"


def test_patching_an_unknown_model_is_404(api_env):
    assert patch("mdl-000000000000", {"promotion": {"gate": "never"}}).status == 404
