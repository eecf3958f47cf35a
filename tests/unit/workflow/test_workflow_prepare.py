"""PrepareTrainingData: the manifest snapshot and the Batch job description."""
from __future__ import annotations

import json
import re

import pytest

from sightline import model_registry, workflow
from sightline.errors import BadRequest, Conflict
from workflow_support import (  # noqa: F401 - workflow_env is a fixture
    ARTIFACTS, LambdaContext, load_event, load_training_steps, manifest, workflow_env,
)


def stored_manifest(s3, model_id: str, version: int = 1) -> dict:
    body = s3.get_object(Bucket=ARTIFACTS, Key=f"manifests/{model_id}/v{version}/manifest.json")["Body"].read()
    return json.loads(body)


def test_prepare_snapshots_the_manifest_and_describes_the_job(workflow_env):
    model_id = workflow_env.model_id
    prepared = workflow.prepare_training({"model_id": model_id, "version": 1})

    assert workflow_env.builder.calls == [(["pets"], "classification", 0.2)]
    assert stored_manifest(workflow_env.s3, model_id) == manifest()
    manifest_uri = f"s3://{ARTIFACTS}/manifests/{model_id}/v1/manifest.json"
    assert prepared == {
        "model_id": model_id,
        "version": 1,
        "job_name": f"sightline-{model_id}-v1",
        "environment": [
            {"Name": "SIGHTLINE_MANIFEST_URI", "Value": manifest_uri},
            {"Name": "SIGHTLINE_OUTPUT_URI", "Value": f"s3://{ARTIFACTS}/models/{model_id}/v1/"},
            {"Name": "SIGHTLINE_CHECKPOINT_URI", "Value": f"s3://{ARTIFACTS}/checkpoints/{model_id}/v1/"},
            {"Name": "SIGHTLINE_TEMPLATE", "Value": "mobilenet_v3_small"},
            {"Name": "SIGHTLINE_PARAMS", "Value": prepared["environment"][4]["Value"]},
        ],
    }
    assert json.loads(prepared["environment"][4]["Value"]) == {
        "batch_size": 32, "epochs": 3, "image_size": 224, "learning_rate": 0.001,
    }
    version = model_registry.get_version(model_id, 1)
    assert version["classes"] == ["cat", "dog"]
    assert version["artifacts"] == {"manifest": manifest_uri}
    assert version["status"] == "training"


def test_a_retry_reuses_the_first_snapshot(workflow_env):
    model_id = workflow_env.model_id
    first = workflow.prepare_training({"model_id": model_id, "version": 1})
    # Datasets changed since: a retry must still train on what the version first saw.
    workflow_env.builder.result = manifest(classes=["bird", "cat", "dog"], marker="second")
    second = workflow.prepare_training({"model_id": model_id, "version": 1})

    assert second == first
    assert len(workflow_env.builder.calls) == 1
    assert stored_manifest(workflow_env.s3, model_id)["marker"] == "first"
    assert model_registry.get_version(model_id, 1)["classes"] == ["cat", "dog"]


def test_of_two_concurrent_attempts_the_first_written_snapshot_wins(workflow_env):
    """Both attempts find no manifest; the other one writes first; this one must use theirs, not overwrite it."""
    model_id = workflow_env.model_id

    def build_while_another_attempt_writes() -> dict:
        workflow_env.s3.put_object(
            Bucket=ARTIFACTS, Key=f"manifests/{model_id}/v1/manifest.json",
            Body=json.dumps(manifest(classes=["ant", "bee"], marker="other attempt")).encode(),
        )
        return manifest(marker="this attempt")

    workflow_env.builder.result = build_while_another_attempt_writes
    workflow.prepare_training({"model_id": model_id, "version": 1})
    assert stored_manifest(workflow_env.s3, model_id)["marker"] == "other attempt"
    assert model_registry.get_version(model_id, 1)["classes"] == ["ant", "bee"]


def test_a_dataset_problem_fails_the_step_with_its_message(workflow_env):
    workflow_env.builder.result = BadRequest("dataset 'pets' has no images for classification")
    with pytest.raises(BadRequest, match="has no images"):
        workflow.prepare_training({"model_id": workflow_env.model_id, "version": 1})
    assert model_registry.get_version(workflow_env.model_id, 1)["artifacts"] == {}


def test_a_finished_version_is_not_prepared_again(workflow_env):
    model_registry.update_version(workflow_env.model_id, 1, status="failed", failure_reason="earlier")
    with pytest.raises(Conflict, match="is failed, not training"):
        workflow.prepare_training({"model_id": workflow_env.model_id, "version": 1})
    assert workflow_env.builder.calls == []


@pytest.mark.parametrize("event", [{}, {"model_id": "mdl-x"}, {"model_id": "mdl-x", "version": "one"},
                                   {"model_id": "", "version": 1}, {"model_id": "mdl-x", "version": True}])
def test_events_without_a_target_are_refused(event):
    with pytest.raises(ValueError):
        workflow.prepare_training(event)


def test_job_names_are_batch_safe():
    name = workflow.batch_job_name("mdl-ab.c/d e" + "x" * 200, 12)
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,128}", name)
    assert workflow.batch_job_name("mdl-0123456789ab", 3) == "sightline-mdl-0123456789ab-v3"


def test_the_lambda_handler_takes_the_state_machine_payload(workflow_env):
    event = load_event("sfn_prepare_training.json")
    event["model_id"] = workflow_env.model_id
    prepared = load_training_steps().prepare_training(event, LambdaContext())
    # What the state machine's ResultSelector picks out of the answer.
    assert prepared["job_name"] == f"sightline-{workflow_env.model_id}-v1"
    assert [entry["Name"] for entry in prepared["environment"]] == [
        "SIGHTLINE_MANIFEST_URI", "SIGHTLINE_OUTPUT_URI", "SIGHTLINE_CHECKPOINT_URI", "SIGHTLINE_TEMPLATE",
        "SIGHTLINE_PARAMS",
    ]


def test_the_real_manifest_builder_is_what_runs_by_default(workflow_env, monkeypatch):
    """Without the fake, sightline.datasets.manifest builds the snapshot: an unregistered dataset fails the step
    with its message (the state machine's Catch records it)."""
    from sightline.datasets.manifest import build_manifest
    from sightline.errors import NotFound

    monkeypatch.setattr(workflow, "build_manifest", build_manifest)
    with pytest.raises((NotFound, BadRequest), match="pets"):
        workflow.prepare_training({"model_id": workflow_env.model_id, "version": 1})


def test_a_version_trains_on_its_own_datasets(workflow_env):
    """A retrain may name other datasets than the model was created with: the manifest follows the version."""
    model_id = workflow_env.model_id
    model_registry.update_version(model_id, 1, datasets=["pets", "more-pets"])
    workflow.prepare_training({"model_id": model_id, "version": 1})
    assert workflow_env.builder.calls == [(["pets", "more-pets"], "classification", 0.2)]
