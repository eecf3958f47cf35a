"""RecordModelVersion pins the model and labels it records: their S3 version id and sha256."""
from __future__ import annotations

import hashlib

from workflow_helpers import ARTIFACTS, record, write_outputs

from sightline import contract, model_registry


def _sha256(s3, key: str, **version) -> str:
    return hashlib.sha256(s3.get_object(Bucket=ARTIFACTS, Key=key, **version)["Body"].read()).hexdigest()


def test_a_ready_version_records_what_its_model_and_labels_are(workflow_env):
    s3, model_id = workflow_env.s3, workflow_env.model_id
    s3.put_bucket_versioning(Bucket=ARTIFACTS, VersioningConfiguration={"Status": "Enabled"})
    write_outputs(s3, model_id, 1, 0.9)
    record(model_id, 1)
    # Written again after recording (a stray job, a hand): the record still names the trained objects.
    prefix = contract.version_prefix(model_id, 1)
    s3.put_object(Bucket=ARTIFACTS, Key=prefix + contract.MODEL_FILE, Body=b"another model")

    integrity = model_registry.get_version(model_id, 1)["integrity"]
    for name, key in (("model", prefix + contract.MODEL_FILE), ("labels", prefix + contract.LABELS_FILE)):
        pin = integrity[name]
        assert pin["version_id"]
        assert pin["sha256"] == _sha256(s3, key, VersionId=pin["version_id"])
    assert integrity["model"]["sha256"] == hashlib.sha256(b"\x08\x07onnx-bytes").hexdigest()
    assert integrity["model"]["sha256"] != _sha256(s3, prefix + contract.MODEL_FILE)


def test_an_unversioned_bucket_records_the_hash_alone(workflow_env):
    write_outputs(workflow_env.s3, workflow_env.model_id, 1, 0.9)
    record(workflow_env.model_id, 1)
    pin = model_registry.get_version(workflow_env.model_id, 1)["integrity"]["model"]
    assert pin == {"version_id": None, "sha256": hashlib.sha256(b"\x08\x07onnx-bytes").hexdigest()}
