"""The promotion gate per model: metric_not_worse with a margin or tolerance and a chosen metric, always, never;
a version that fails it stays ready, unpromoted, with the comparison recorded and ModelVersionRejected sent."""
from __future__ import annotations

import pytest

from sightline import model_registry
from workflow_helpers import train


def gate(env, **policy) -> None:
    current = model_registry.get_model(env.model_id)["promotion"]
    model_registry.set_policies(env.model_id, promotion={**current, **policy})


def serving(env) -> int:
    return model_registry.get_model(env.model_id)["serving_version"]


def rejections(env) -> list[dict]:
    return [detail for kind, detail in env.published if kind == "ModelVersionRejected"]


def test_a_margin_asks_for_a_real_improvement(workflow_env):
    gate(workflow_env, min_improvement=0.05)
    train(workflow_env, 1, 0.80)
    assert train(workflow_env, 2, 0.83)["promoted"] is False
    [rejected] = rejections(workflow_env)
    assert rejected == {
        "model_id": workflow_env.model_id, "version": 2, "serving_version": 1, "gate": "metric_not_worse",
        "metric": "accuracy", "score": 0.83, "serving_score": 0.80, "min_improvement": 0.05,
        "reason": rejected["reason"],
    }
    promotion = model_registry.get_version(workflow_env.model_id, 2)["promotion"]
    assert (promotion["passed"], promotion["score"], promotion["serving_score"]) == (False, 0.83, 0.80)
    assert train(workflow_env, 3, 0.86)["promoted"] is True
    assert serving(workflow_env) == 3
    assert model_registry.get_version(workflow_env.model_id, 3)["promotion"]["passed"] is True


def test_a_tolerance_accepts_a_slightly_worse_version(workflow_env):
    gate(workflow_env, min_improvement=-0.02)
    train(workflow_env, 1, 0.90)
    assert train(workflow_env, 2, 0.89)["promoted"] is True
    assert train(workflow_env, 3, 0.85)["promoted"] is False
    assert serving(workflow_env) == 2


def test_the_gate_can_compare_another_metric(workflow_env):
    gate(workflow_env, metric="f1_macro")
    train(workflow_env, 1, 0.9, metrics_extra={"f1_macro": 0.5})
    # Better accuracy, worse f1_macro: rejected on f1_macro.
    assert train(workflow_env, 2, 0.95, metrics_extra={"f1_macro": 0.4})["promoted"] is False
    assert rejections(workflow_env)[0]["metric"] == "f1_macro"
    # A version without the metric cannot pass it.
    assert train(workflow_env, 3, 0.99)["promoted"] is False
    assert "no numeric 'f1_macro'" in model_registry.get_version(workflow_env.model_id, 3)["promotion"]["reason"]
    assert serving(workflow_env) == 1


@pytest.mark.parametrize(("policy", "promoted"), [({"gate": "always"}, True), ({"gate": "never"}, False)])
def test_always_and_never_ignore_the_scores(workflow_env, policy, promoted):
    gate(workflow_env, **policy)
    train(workflow_env, 1, 0.5)  # the first trained version serves whatever the gate
    assert serving(workflow_env) == 1
    assert train(workflow_env, 2, 0.1 if promoted else 0.9)["promoted"] is promoted
    assert serving(workflow_env) == (2 if promoted else 1)
    assert len(rejections(workflow_env)) == (0 if promoted else 1)
    assert model_registry.get_model(workflow_env.model_id)["status"] == "ready"
