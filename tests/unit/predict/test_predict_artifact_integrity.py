"""A version pins its model and labels (S3 version id + sha256): predict loads exactly those objects or refuses."""
from __future__ import annotations

import hashlib
import json

import pytest
from predict_helpers import classifier_labels, upload_version

from sightline import model_registry, workflow
from sightline.inference import ModelArtifactError, load_predictor


@pytest.fixture
def versioned(aws_resources):
    aws_resources.s3.put_bucket_versioning(Bucket=aws_resources.artifact_bucket,
                                           VersioningConfiguration={"Status": "Enabled"})
    return aws_resources


def _version(resources, model: bytes, labels: dict, *, pinned: bool = True) -> dict:
    created, _ = model_registry.create_model(name="tiny", task="classification", datasets=["shapes"],
                                             template=labels["template"], params={})
    model_id = created["model_id"]
    artifacts = upload_version(resources, model_id, 1, model, labels)
    fields = {"status": "ready", "artifacts": artifacts, "promoted": True}
    if pinned:
        fields["integrity"] = {"model": workflow.pin_artifact(artifacts["model"]),
                               "labels": workflow.pin_artifact(artifacts["labels"])}
    model_registry.update_version(model_id, 1, **fields)
    return model_registry.get_version(model_id, 1)


def test_a_pin_names_the_current_s3_version_and_its_sha256(versioned, classifier_onnx):
    version = _version(versioned, classifier_onnx, classifier_labels())
    pin = version["integrity"]["model"]
    head = versioned.s3.head_object(Bucket=versioned.artifact_bucket, Key=version["artifacts"]["model"])
    assert pin == {"version_id": head["VersionId"], "sha256": hashlib.sha256(classifier_onnx).hexdigest()}


def test_a_model_overwritten_after_recording_is_not_served(versioned, classifier_onnx):
    """The key now holds another object; predict still loads the recorded version, which checks out."""
    version = _version(versioned, classifier_onnx, classifier_labels())
    versioned.s3.put_object(Bucket=versioned.artifact_bucket, Key=version["artifacts"]["model"], Body=b"swapped")
    predictor = load_predictor(version["model_id"], version)
    assert predictor.classes == classifier_labels()["classes"]


def test_a_model_that_does_not_hash_to_its_record_is_refused(versioned, classifier_onnx):
    version = _version(versioned, classifier_onnx, classifier_labels())
    version["integrity"]["model"]["sha256"] = "0" * 64  # the recorded object is not the one in S3
    with pytest.raises(ModelArtifactError, match="sha256"):
        load_predictor(version["model_id"], version)


def test_labels_swapped_in_an_unversioned_bucket_are_refused(aws_resources, classifier_onnx):
    """Without versioning there is no version id to pin; the hash still catches the change."""
    version = _version(aws_resources, classifier_onnx, classifier_labels())
    assert version["integrity"]["labels"]["version_id"] is None
    tampered = {**classifier_labels(), "classes": ["dog", "cat"]}
    aws_resources.s3.put_object(Bucket=aws_resources.artifact_bucket, Key=version["artifacts"]["labels"],
                                Body=json.dumps(tampered))
    with pytest.raises(ModelArtifactError, match="labels.json"):
        load_predictor(version["model_id"], version)


def test_a_refused_download_leaves_nothing_cached(versioned, classifier_onnx):
    version = _version(versioned, classifier_onnx, classifier_labels())
    good = dict(version["integrity"]["model"])
    version["integrity"]["model"]["sha256"] = "f" * 64
    with pytest.raises(ModelArtifactError):
        load_predictor(version["model_id"], version)
    version["integrity"]["model"] = good
    assert load_predictor(version["model_id"], version).classes == classifier_labels()["classes"]


def test_versions_recorded_before_pinning_still_load(aws_resources, classifier_onnx):
    version = _version(aws_resources, classifier_onnx, classifier_labels(), pinned=False)
    assert version["integrity"] is None
    assert load_predictor(version["model_id"], version).classes == classifier_labels()["classes"]
