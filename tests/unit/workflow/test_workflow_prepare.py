"""PrepareTrainingData: the manifest snapshot and the Batch job description."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from sightline import model_registry, templates, workflow
from sightline.datasets.manifest import build_manifest
from sightline.errors import BadRequest, Conflict
from support import LambdaContext, intercept_aws, load_event, load_function
from workflow_helpers import ARTIFACTS

ROOT = Path(__file__).resolve().parents[3]


def manifest_key(model_id: str, version: int = 1) -> str:
    return f"manifests/{model_id}/v{version}/manifest.json"


def stored_manifest(s3, model_id: str, version: int = 1) -> dict:
    body = s3.get_object(Bucket=ARTIFACTS, Key=manifest_key(model_id, version))["Body"].read()
    return json.loads(body)


def manifest_written(s3, model_id: str, version: int = 1) -> bool:
    listing = s3.list_objects_v2(Bucket=ARTIFACTS, Prefix=manifest_key(model_id, version))
    return listing.get("KeyCount", 0) > 0


def built_now(datasets: list[str], stored: dict) -> dict:
    """What the real builder makes of ``datasets`` for classification with the default validation fraction (0.2),
    timed as ``stored`` was, to compare with it."""
    return {**build_manifest(datasets, "classification", 0.2), "created_at": stored["created_at"]}


def test_prepare_snapshots_the_manifest_and_describes_the_job(workflow_env, pets):
    model_id = workflow_env.model_id
    prepared = workflow.prepare_training({"model_id": model_id, "version": 1})

    stored = stored_manifest(workflow_env.s3, model_id)
    assert (stored["datasets"], stored["task"], stored["classes"]) == (["pets"], "classification", ["cat", "dog"])
    assert sorted(item["split"] for item in stored["items"]).count("validation") in range(2, 5)
    assert stored == built_now(["pets"], stored)
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
            # The workflow steps' correlation id, so the job's log lines join theirs.
            {"Name": "SIGHTLINE_CORRELATION_ID", "Value": f"{model_id}-v1"},
        ],
        # One GPU's share of an instance, as the job definition asks for one.
        "resources": [{"Type": "GPU", "Value": "1"}, {"Type": "VCPU", "Value": "4"},
                      {"Type": "MEMORY", "Value": "15000"}],
    }
    assert json.loads(prepared["environment"][4]["Value"]) == {
        "batch_size": None, "epochs": 3, "image_size": 224, "learning_rate": 0.001,
        "pretrained": True, "weights_uri": None, "freeze_backbone_epochs": 0, "augment": 0.5,
        "any_orientation": False, "warmup_epochs": 1.0, "final_learning_rate_fraction": 0.01, "weight_decay": 0.05,
        "early_stopping_patience": 10, "seed": 0, "gpus": 1, "precision": "auto",
        "quantize": "none", "quantize_tolerance": 1.0,
    }
    version = model_registry.get_version(model_id, 1)
    assert version["classes"] == ["cat", "dog"]
    assert version["artifacts"] == {"manifest": manifest_uri}
    assert version["status"] == "training"


def test_gpus_2_asks_batch_for_2_gpus_and_their_share_of_the_instance(workflow_env, pets):
    model_id = workflow_env.model_id
    params = templates.TEMPLATES["mobilenet_v3_small"].resolve_params({"epochs": 3, "gpus": 2})
    model_registry.update_version(model_id, 1, params=params)

    prepared = workflow.prepare_training({"model_id": model_id, "version": 1})

    assert prepared["resources"] == [{"Type": "GPU", "Value": "2"}, {"Type": "VCPU", "Value": "8"},
                                     {"Type": "MEMORY", "Value": "30000"}]
    assert json.loads(prepared["environment"][4]["Value"])["gpus"] == 2  # the container starts 2 ranks


def test_a_version_from_before_the_gpus_param_asks_for_one_gpu():
    assert workflow.batch_resources({"epochs": 3})[0] == {"Type": "GPU", "Value": "1"}


def test_the_state_machine_passes_the_resources_to_batch():
    definition = json.loads((ROOT / "statemachines" / "train.asl.json").read_text())
    prepare, train = definition["States"]["PrepareTrainingData"], definition["States"]["TrainModel"]
    assert prepare["ResultSelector"]["resources.$"] == "$.Payload.resources"
    assert train["Parameters"]["ContainerOverrides"] == {"Environment.$": "$.prepared.environment",
                                                         "ResourceRequirements.$": "$.prepared.resources"}


def test_a_retry_reuses_the_first_snapshot(workflow_env, pets):
    model_id = workflow_env.model_id
    first = workflow.prepare_training({"model_id": model_id, "version": 1})
    snapshot = stored_manifest(workflow_env.s3, model_id)
    # Datasets changed since: a retry must still train on what the version first saw.
    workflow_env.datasets.classification("pets", {"bird": 5})
    assert build_manifest(["pets"], "classification", 0.2)["classes"] == ["bird", "cat", "dog"]
    second = workflow.prepare_training({"model_id": model_id, "version": 1})

    assert second == first
    assert stored_manifest(workflow_env.s3, model_id) == snapshot  # not built and written again
    assert snapshot["classes"] == ["cat", "dog"]
    assert model_registry.get_version(model_id, 1)["classes"] == ["cat", "dog"]


def test_of_two_concurrent_attempts_the_first_written_snapshot_wins(workflow_env, pets, monkeypatch):
    """Both attempts find no manifest; the other one writes first; this one must use theirs, not overwrite it."""
    model_id = workflow_env.model_id
    other_attempt: list[dict] = []

    def put_object(real_put_object, **kwargs):
        if kwargs["Key"] == manifest_key(model_id) and not other_attempt:
            # This attempt has built its snapshot (cats and dogs). In between, a bird is registered and the
            # other attempt runs to the end, writing its own snapshot first.
            other_attempt.append({})
            workflow_env.datasets.classification("pets", {"bird": 5})
            other_attempt[0] = workflow.prepare_training({"model_id": model_id, "version": 1})
        return real_put_object(**kwargs)

    intercept_aws(monkeypatch, "s3", "put_object", put_object)
    prepared = workflow.prepare_training({"model_id": model_id, "version": 1})
    assert prepared == other_attempt[0]
    assert stored_manifest(workflow_env.s3, model_id)["classes"] == ["bird", "cat", "dog"]
    assert model_registry.get_version(model_id, 1)["classes"] == ["bird", "cat", "dog"]


def test_a_dataset_problem_fails_the_step_with_its_message(workflow_env):
    workflow_env.datasets.detection("pets")  # boxes only: no class-folder images to train a classifier on
    with pytest.raises(BadRequest, match="no classification data in pets"):
        workflow.prepare_training({"model_id": workflow_env.model_id, "version": 1})
    assert model_registry.get_version(workflow_env.model_id, 1)["artifacts"] == {}


def test_a_finished_version_is_not_prepared_again(workflow_env, pets):
    model_registry.update_version(workflow_env.model_id, 1, status="failed", failure_reason="earlier")
    with pytest.raises(Conflict, match="is failed, not training"):
        workflow.prepare_training({"model_id": workflow_env.model_id, "version": 1})
    assert not manifest_written(workflow_env.s3, workflow_env.model_id)  # no snapshot was built


@pytest.mark.parametrize("event", [{}, {"model_id": "mdl-x"}, {"model_id": "mdl-x", "version": "one"},
                                   {"model_id": "", "version": 1}, {"model_id": "mdl-x", "version": True}])
def test_events_without_a_target_are_refused(event):
    with pytest.raises(ValueError):
        workflow.prepare_training(event)


def test_job_names_are_batch_safe():
    name = workflow.batch_job_name("mdl-ab.c/d e" + "x" * 200, 12)
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,128}", name)
    assert workflow.batch_job_name("mdl-0123456789ab", 3) == "sightline-mdl-0123456789ab-v3"


def test_the_lambda_handler_takes_the_state_machine_payload(workflow_env, pets):
    event = load_event("sfn_prepare_training.json")
    event["model_id"] = workflow_env.model_id
    prepared = load_function("training_steps").prepare_training(event, LambdaContext())
    # What the state machine's ResultSelector picks out of the answer.
    assert prepared["job_name"] == f"sightline-{workflow_env.model_id}-v1"
    assert [entry["Name"] for entry in prepared["environment"]] == [
        "SIGHTLINE_MANIFEST_URI", "SIGHTLINE_OUTPUT_URI", "SIGHTLINE_CHECKPOINT_URI", "SIGHTLINE_TEMPLATE",
        "SIGHTLINE_PARAMS", "SIGHTLINE_CORRELATION_ID",
    ]


def test_the_real_manifest_builder_is_what_runs_by_default(workflow_env):
    """sightline.datasets.manifest builds the snapshot: an unregistered dataset fails the step with its message
    (the state machine's Catch records it)."""
    from sightline.errors import NotFound

    assert workflow.build_manifest is build_manifest
    with pytest.raises((NotFound, BadRequest), match="pets"):
        workflow.prepare_training({"model_id": workflow_env.model_id, "version": 1})


def test_a_version_trains_on_its_own_datasets(workflow_env, pets):
    """A retrain may name other datasets than the model was created with: the manifest follows the version."""
    model_id = workflow_env.model_id
    workflow_env.datasets.classification("more-pets", {"cat": 1, "dog": 1, "fox": 5})
    model_registry.update_version(model_id, 1, datasets=["pets", "more-pets"])
    workflow.prepare_training({"model_id": model_id, "version": 1})
    stored = stored_manifest(workflow_env.s3, model_id)
    assert (stored["datasets"], stored["task"], len(stored["items"])) == (["pets", "more-pets"], "classification", 17)
    assert stored == built_now(["pets", "more-pets"], stored)
