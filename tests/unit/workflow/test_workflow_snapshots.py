"""Every model version records the immutable, content-addressed snapshot it trains on."""
from __future__ import annotations

import json

from sightline import model_registry, templates, workflow
from sightline.datasets import snapshots


def second_model(task: str = "classification") -> str:
    model, _ = model_registry.create_model(
        name="again", task=task, datasets=["pets"], template="mobilenet_v3_small",
        params=templates.TEMPLATES["mobilenet_v3_small"].resolve_params({}))
    return model["model_id"]


def test_a_version_records_its_snapshot_and_the_dataset_lists_it(workflow_env, pets):
    model_id = workflow_env.model_id
    workflow.prepare_training({"model_id": model_id, "version": 1})

    version = model_registry.get_version(model_id, 1)
    manifest_key = version["artifacts"]["manifest"].split("/", 3)[3]
    manifest = json.loads(workflow_env.s3.get_object(Bucket=workflow_env.datasets.resources.artifact_bucket,
                                                     Key=manifest_key)["Body"].read())
    assert version["snapshot"] == snapshots.snapshot_id(manifest)
    [listed] = snapshots.list_snapshots("pets")
    assert listed["snapshot_id"] == version["snapshot"]
    assert (listed["task"], listed["datasets"], listed["images"], listed["classes"]) == (
        "classification", ["pets"], 10, {"cat": 5, "dog": 5})
    assert listed["model_versions"] == [f"{model_id}/v1"]
    kept = json.loads(workflow_env.s3.get_object(Bucket=workflow_env.datasets.resources.artifact_bucket,
                                                 Key=snapshots.snapshot_key(listed["snapshot_id"]))["Body"].read())
    assert kept["items"] == manifest["items"]


def test_the_same_data_is_the_same_snapshot_and_new_data_a_new_one(workflow_env, pets):
    workflow.prepare_training({"model_id": workflow_env.model_id, "version": 1})
    other = second_model()
    workflow.prepare_training({"model_id": other, "version": 1})
    [same] = snapshots.list_snapshots("pets")
    assert same["model_versions"] == sorted([f"{workflow_env.model_id}/v1", f"{other}/v1"])

    workflow_env.datasets.classification("pets", {"bird": 5})
    third = second_model()
    workflow.prepare_training({"model_id": third, "version": 1})
    newest, oldest = snapshots.list_snapshots("pets")
    assert oldest["snapshot_id"] == same["snapshot_id"] and newest["model_versions"] == [f"{third}/v1"]
    assert newest["classes"] == {"bird": 5, "cat": 5, "dog": 5}
