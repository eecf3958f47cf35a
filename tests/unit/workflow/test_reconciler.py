"""The execution reconciler: a training execution that ended FAILED, TIMED_OUT or ABORTED without recording its
version leaves it failed or cancelled (never training), a final state is never overwritten, and the version
queued behind it starts."""
from __future__ import annotations

import json

import pytest

from sightline import model_registry, reconciler, retraining, templates
from sightline.contract import VersionStatus
from sightline.training_spec import TrainingSpec
from support import LambdaContext, create_training_state_machine, load_event, load_function
from workflow_helpers import add_version, train


def status_change(model_id: str, version: int, status: str, *, cause: str | None = "it broke") -> dict:
    event = load_event("eventbridge_sfn_status_change.json")
    name = f"{model_id}-v{version}"
    event["detail"].update(status=status, name=name, cause=cause,
                           executionArn=event["detail"]["executionArn"].rsplit(":", 1)[0] + f":{name}",
                           input=json.dumps({"model_id": model_id, "version": version}))
    return event


@pytest.fixture
def retraining_model(workflow_env):
    """Version 1 serves; version 2 is training."""
    train(workflow_env, 1, 0.9)
    add_version(workflow_env.model_id, 2)
    model_registry.raise_latest_version(workflow_env.model_id, 2)
    return workflow_env


@pytest.mark.parametrize("status", ["FAILED", "TIMED_OUT"])
def test_a_run_that_ended_unrecorded_leaves_its_version_failed(retraining_model, status):
    env = retraining_model
    answer = reconciler.reconcile_execution(status_change(env.model_id, 2, status))
    assert answer["outcome"] == "failed"
    version = model_registry.get_version(env.model_id, 2)
    assert version["status"] == "failed" and status in version["failure_reason"]
    assert "it broke" in version["failure_reason"]
    model = model_registry.get_model(env.model_id)
    assert (model["status"], model["serving_version"]) == ("ready", 1)  # the serving version keeps serving
    assert ("ModelVersionFailed", 2) in [(kind, detail["version"]) for kind, detail in env.published]


def test_a_stopped_execution_cancels_its_version(retraining_model):
    env = retraining_model
    assert reconciler.reconcile_execution(status_change(env.model_id, 2, "ABORTED", cause=None))["outcome"] == "cancelled"
    version = model_registry.get_version(env.model_id, 2)
    assert version["status"] == "cancelled" and "stopped" in version["failure_reason"]
    assert model_registry.get_model(env.model_id)["serving_version"] == 1


@pytest.mark.parametrize("final", [VersionStatus.CANCELLED, VersionStatus.FAILED, VersionStatus.READY])
def test_a_final_state_is_never_overwritten(retraining_model, final):
    env = retraining_model
    model_registry.update_version(env.model_id, 2, status=final, failure_reason="as it was")
    for status in ("FAILED", "ABORTED", "TIMED_OUT"):
        assert reconciler.reconcile_execution(status_change(env.model_id, 2, status))["outcome"] == "already_final"
    version = model_registry.get_version(env.model_id, 2)
    assert (version["status"], version["failure_reason"]) == (final, "as it was")
    assert [kind for kind, _ in env.published if kind in ("ModelVersionFailed", "ModelVersionCancelled")] == []


def test_other_statuses_and_unknown_versions_change_nothing(retraining_model):
    env = retraining_model
    assert reconciler.reconcile_execution(status_change(env.model_id, 2, "SUCCEEDED"))["outcome"] == "ignored"
    assert reconciler.reconcile_execution(status_change(env.model_id, 9, "FAILED"))["outcome"] == "ignored"
    assert reconciler.reconcile_execution(status_change("mdl-gone", 1, "FAILED"))["outcome"] == "ignored"
    assert model_registry.get_version(env.model_id, 2)["status"] == "training"


def test_the_version_is_found_by_the_execution_name_without_input(retraining_model):
    env = retraining_model
    event = status_change(env.model_id, 2, "FAILED")
    event["detail"]["input"] = None
    assert reconciler.reconcile_execution(event)["outcome"] == "failed"


def test_the_queued_version_starts_once_the_run_is_settled(retraining_model):
    env = retraining_model
    create_training_state_machine()
    spec = TrainingSpec(datasets=["pets"], template="mobilenet_v3_small",
                        params=templates.TEMPLATES["mobilenet_v3_small"].resolve_params({"epochs": 3}),
                        dataset_digests={})
    assert retraining.request_version(env.model_id, spec, trigger={"type": "api"})["status"] == "queued"
    reconciler.reconcile_execution(status_change(env.model_id, 2, "FAILED"))
    model = model_registry.get_model(env.model_id)
    assert model["latest_version"] == 3 and model_registry.pending_version(env.model_id) is None
    assert model_registry.get_version(env.model_id, 3)["trigger"] == {"type": "api", "queued": True}


def test_the_handler(retraining_model):
    handler = load_function("reconcile_training").handler
    answer = handler(status_change(retraining_model.model_id, 2, "TIMED_OUT"), LambdaContext())
    assert answer == {"model_id": retraining_model.model_id, "version": 2, "execution_status": "TIMED_OUT",
                      "outcome": "failed"}


# ---------------------------------------------------------------- a blocking version's real state


def request(env) -> dict:
    spec = TrainingSpec(datasets=["pets"], template="mobilenet_v3_small",
                        params=templates.TEMPLATES["mobilenet_v3_small"].resolve_params({"epochs": 3}),
                        dataset_digests={})
    return retraining.request_version(env.model_id, spec, trigger={"type": "api"})


def executions_report(monkeypatch, status: str | None) -> None:
    """describe_execution answers ``status`` (None: the execution does not exist)."""
    from botocore.exceptions import ClientError
    from support import intercept_aws

    def describe_execution(real, **kwargs):
        if status is None:
            raise ClientError({"Error": {"Code": "ExecutionDoesNotExist", "Message": "no"}}, "DescribeExecution")
        return {"executionArn": kwargs["executionArn"], "status": status, "cause": "gone", "error": "States.X"}

    intercept_aws(monkeypatch, "stepfunctions", "describe_execution", describe_execution)


@pytest.mark.parametrize(("status", "settled_as"), [("ABORTED", "cancelled"), ("FAILED", "failed"),
                                                     ("TIMED_OUT", "failed")])
def test_a_request_blocked_by_a_run_that_is_over_settles_it_and_starts(retraining_model, monkeypatch, status,
                                                                       settled_as):
    create_training_state_machine()
    executions_report(monkeypatch, status)
    answer = request(retraining_model)
    assert (answer["version"], answer["status"]) == (3, "training")
    assert model_registry.get_version(retraining_model.model_id, 2)["status"] == settled_as
    assert model_registry.pending_version(retraining_model.model_id) is None


def test_a_request_blocked_by_a_running_run_is_queued(retraining_model, monkeypatch):
    executions_report(monkeypatch, "RUNNING")
    assert request(retraining_model)["status"] == "queued"
    assert model_registry.get_version(retraining_model.model_id, 2)["status"] == "training"


def test_a_version_whose_workflow_never_started_is_failed_once_it_is_old(retraining_model, monkeypatch):
    create_training_state_machine()
    executions_report(monkeypatch, None)
    assert request(retraining_model)["status"] == "queued"  # just written: its start may still be on its way
    model_registry.update_version(retraining_model.model_id, 2, created_at="2026-01-01T00:00:00.000000Z")
    assert request(retraining_model)["version"] == 3
    version = model_registry.get_version(retraining_model.model_id, 2)
    assert version["status"] == "failed" and "never started" in version["failure_reason"]
